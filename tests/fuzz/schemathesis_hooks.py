"""Schemathesis hooks for .ci/fuzz_api: values for the schema's custom formats.

``image-base64`` (image_metadata's input) is a base64 image file; a schema can
say so but not what a decodable image is, so real images are drawn here.
"""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

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


schemathesis.openapi.format("image-base64", base64_images())


# Completion callbacks: ``callback_url`` (format uri) is checked against the server's
# CALLBACK_ALLOWED_HOSTS, which the schema cannot know. .ci/fuzz_api allows 127.0.0.1;
# valid URLs are drawn there, on a port nothing listens on (each delivery is one refused
# connection, and CALLBACK_RETRY_FOR_S=0 makes it the only one).
CALLBACK_PATHS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/", max_size=64)
schemathesis.openapi.format(
    "uri", CALLBACK_PATHS.map(lambda path: f"http://127.0.0.1:9/{path.lstrip('/')}")
)
