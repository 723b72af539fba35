"""Schemathesis hooks for .ci/fuzz_api: values for custom formats, semantic refusals.

``image-base64`` (image_metadata's input) is a base64 image file; a schema can
say so but not what a decodable image is, so real images are drawn here, and now
and then well-formed base64 that is no image (or a truncated one): the schema
allows it, and the API must refuse it semantically.

Data the schema allows must be accepted, with one exception the API documents: a
``ValidationError`` whose every entry is marked ``"semantic": true`` (docs/api.md,
docs/plugins.md), the refusal of a check no JSON Schema can state. So .ci/fuzz_api
runs ``positive_data_acceptance_except_semantic`` in place of schemathesis' own
``positive_data_acceptance``: any other refusal of valid data still fails the run.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance as schema_positive_data_acceptance,
)

# Formats and the modes Pillow can write each in.
IMAGE_MODES = {"PNG": ["RGB", "RGBA", "L", "P"], "GIF": ["P", "L"], "BMP": ["RGB", "L"]}


@st.composite
def base64_images(draw: st.DrawFn) -> str:
    image_format = draw(st.sampled_from(sorted(IMAGE_MODES)))
    mode = draw(st.sampled_from(IMAGE_MODES[image_format]))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    colour = draw(st.integers(0, 255))
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, image_format)
    return base64.b64encode(buffer.getvalue()).decode()


@st.composite
def base64_non_images(draw: st.DrawFn) -> str:
    """Valid by the schema's pattern, refused semantically: random or truncated bytes."""
    image = base64.b64decode(draw(base64_images()))
    data = draw(st.one_of(st.binary(min_size=1, max_size=64), st.just(image[: len(image) // 2])))
    return base64.b64encode(data).decode()


schemathesis.openapi.format(
    "image-base64",
    st.one_of(base64_images(), base64_images(), base64_images(), base64_non_images()),
)


def is_semantic_refusal(status_code: int, body: Any) -> bool:
    """A 400 ValidationError with entries, each one marked semantic."""
    if status_code != 400 or not isinstance(body, dict):
        return False
    detail = body.get("detail")
    if not isinstance(detail, dict) or detail.get("type") != "ValidationError":
        return False
    details = detail.get("details")
    errors = details.get("errors") if isinstance(details, dict) else None
    return (
        isinstance(errors, list)
        and bool(errors)
        and all(isinstance(entry, dict) and entry.get("semantic") is True for entry in errors)
    )


@schemathesis.check
def positive_data_acceptance_except_semantic(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ``positive_data_acceptance``, but for semantic refusals."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if is_semantic_refusal(response.status_code, body):
        return None
    result: bool | None = schema_positive_data_acceptance(ctx, response, case)
    return result


# Completion callbacks: ``callback_url`` (format uri, the pattern and length of
# destinations.CALLBACK_URL_PATTERN) is then checked against the server's
# CALLBACK_ALLOWED_HOSTS and what its host resolves to, which the schema cannot state:
# such a refusal is semantic, so URLs of every kind are drawn. .ci/fuzz_api allows
# 127.0.0.1 only, and only on port 9, where nothing listens (each delivery is one
# refused connection, and CALLBACK_RETRY_FOR_S=0 makes it the only one): no drawn
# URL reaches a service of this machine. Every other host is refused before any DNS.
URL_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
LABELS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
NOT_ALLOWED_HOSTS = st.one_of(
    st.sampled_from(["localhost", "hooks.example.com", "[::1]", "[64:ff9b::a9fe:a9fe]"]),
    st.lists(LABELS, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str).filter(lambda ip: ip != "127.0.0.1"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)
CALLBACK_PATHS = st.text(alphabet=URL_CHARACTERS + "/", max_size=64).map(lambda p: "/" + p)
CALLBACK_QUERIES = st.one_of(
    st.just(""), st.text(alphabet=URL_CHARACTERS + "/?", max_size=32).map(lambda q: "?" + q)
)


@st.composite
def callback_urls(draw: st.DrawFn) -> str:
    """A URL the schema allows: now and then one the server takes, else one it refuses."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    authority = draw(
        st.one_of(
            st.just("127.0.0.1:9"),
            st.integers(65536, 99999).map(lambda port: f"127.0.0.1:{port}"),
            st.tuples(NOT_ALLOWED_HOSTS, st.none() | st.integers(1, 65535)).map(
                lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"
            ),
        )
    )
    return f"{scheme}://{authority}{draw(CALLBACK_PATHS)}{draw(CALLBACK_QUERIES)}"


schemathesis.openapi.format("uri", callback_urls())
