"""Artifacts: files a plugin returns with its output (an image, a report, an archive).

A plugin's ``run`` returns ``WithArtifacts(output, [Artifact(name, content_type, data)])``
instead of its bare output. The output is validated against the plugin's ``Output``
model as always and becomes the job's (small) JSON result; each artifact's bytes are
stored as a file of the job, and clients download it from
``GET /v1/jobs/{id}/artifacts/{name}``. Artifacts never appear in ``result``.

What an artifact may be is checked where the plugin runs (so its author gets the
error) and again by the server (a host runs plugin code: it may lie). A bad one is an
``OutputValidationError``, the execution fails and nothing of it is stored.

This module imports nothing of Django: a plugin host imports it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugins.errors.exceptions import OutputValidationError

__all__ = [
    "DEFAULT_MAX_ARTIFACT_BYTES",
    "MAX_ARTIFACTS",
    "Artifact",
    "WithArtifacts",
]

DEFAULT_MAX_ARTIFACT_BYTES = 50 * 1024 * 1024
"""The default of a plugin's ``max_artifact_bytes``: the largest one artifact may be."""
MAX_ARTIFACTS = 16
"""How many artifacts one execution may return."""
MAX_NAME_CHARS = 200
MAX_CONTENT_TYPE_CHARS = 255


@dataclass(frozen=True)
class Artifact:
    """One file a plugin returns: its name (a plain file name), media type and bytes.

    ``name`` is unique among the execution's artifacts and becomes the last part of
    its download URL: no ``/`` or ``\\``, not ``.`` or ``..``, no NUL, other control,
    format or (lone) surrogate characters, at most 200 characters. ``content_type`` is
    a media type such as ``image/png``; downloads are served with it.
    """

    name: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class WithArtifacts:
    """What ``run`` returns to hand back files besides its output.

    ``output``: what ``run`` would otherwise return (an ``Output`` instance or a dict).
    """

    output: Any
    artifacts: Sequence[Artifact] = ()


@dataclass(frozen=True)
class ArtifactHeader:
    """An artifact as it is announced across the sandbox boundary: everything but its bytes."""

    name: str
    content_type: str
    size: int

    def as_report(self) -> dict[str, Any]:
        return {"name": self.name, "content_type": self.content_type, "size": self.size}


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an artifact (a file of the job, the end of a URL), or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAME_CHARS:
        return f"must be at most {MAX_NAME_CHARS} characters"
    if "/" in name or "\\" in name:
        return "must not contain '/' or '\\'"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in name):
        return "must not contain NUL, other control, format or surrogate characters"
    if not _encodes_as_utf8(name):  # no database, URL or file system could hold it
        return "must be valid Unicode (encodable as UTF-8)"
    if name != name.strip():
        return "must not start or end with whitespace"
    return None


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def content_type_problem(content_type: object) -> str | None:
    """Why ``content_type`` is no media type to serve a download with, or None."""
    if not isinstance(content_type, str) or not content_type:
        return "must be a non-empty string"
    if len(content_type) > MAX_CONTENT_TYPE_CHARS:
        return f"must be at most {MAX_CONTENT_TYPE_CHARS} characters"
    if not content_type.isascii() or any(not char.isprintable() for char in content_type):
        return "must be printable ASCII"
    kind, slash, subtype = content_type.partition(";")[0].strip().partition("/")
    if not slash or not kind or not subtype or " " in kind or " " in subtype:
        return "must be a media type such as 'image/png'"
    return None


def check_headers(
    subject: str,
    headers: Iterable[ArtifactHeader],
    max_bytes: int,
    max_total_bytes: int | None = None,
) -> None:
    """Raise OutputValidationError unless these artifacts are within every limit.

    ``max_total_bytes``: the bound on their sizes together (the operator's), if any.
    """
    seen: set[str] = set()
    headers = list(headers)
    _check_count(subject, len(headers))
    for header in headers:
        problem = name_problem(header.name)
        if problem is not None:
            raise _refused(subject, f"returned an artifact whose name {problem}", reason=problem)
        if header.name in seen:
            raise _refused(
                subject, f"returned two artifacts named {header.name!r}", artifact=header.name
            )
        seen.add(header.name)
        problem = content_type_problem(header.content_type)
        if problem is not None:
            raise _refused(
                subject,
                f"returned artifact {header.name!r} whose content type {problem}",
                artifact=header.name,
                reason=problem,
            )
        if header.size > max_bytes:
            raise _refused(
                subject,
                f"returned artifact {header.name!r} of {header.size} bytes; the limit is "
                f"{max_bytes}",
                artifact=header.name,
                artifact_bytes=header.size,
                max_artifact_bytes=max_bytes,
            )
    total = sum(header.size for header in headers)
    if max_total_bytes is not None and total > max_total_bytes:
        raise _refused(
            subject,
            f"returned artifacts of {total} bytes together; the limit is {max_total_bytes}",
            artifacts_bytes=total,
            max_artifacts_total_bytes=max_total_bytes,
        )


def checked_artifacts(
    subject: str, artifacts: object, max_bytes: int, max_total_bytes: int | None = None
) -> tuple[Artifact, ...]:
    """What a plugin's ``WithArtifacts`` holds, checked; else OutputValidationError."""
    if isinstance(artifacts, str | bytes) or not isinstance(artifacts, Iterable):
        raise _refused(subject, "returned artifacts that are not a list of Artifact")
    items = tuple(artifacts)
    _check_count(subject, len(items))
    checked: list[Artifact] = []
    for item in items:
        if not isinstance(item, Artifact) or not isinstance(item.data, bytes):
            raise _refused(
                subject,
                "returned an artifact that is not an Artifact with bytes as its data",
                returned_type=type(item).__name__,
            )
        checked.append(item)
    check_headers(subject, [header_of(item) for item in checked], max_bytes, max_total_bytes)
    return tuple(checked)


def header_of(artifact: Artifact) -> ArtifactHeader:
    return ArtifactHeader(artifact.name, artifact.content_type, len(artifact.data))


def headers_from_report(subject: str, report: object) -> list[ArtifactHeader]:
    """The headers a host announced, rebuilt from JSON; OutputValidationError if malformed."""
    if report is None:
        return []
    if not isinstance(report, list):
        raise _refused(subject, "sent an unreadable list of artifacts")
    _check_count(subject, len(report))
    headers = []
    for entry in report:
        if not isinstance(entry, dict):
            raise _refused(subject, "sent an unreadable list of artifacts")
        name, content_type, size = entry.get("name"), entry.get("content_type"), entry.get("size")
        if (
            not isinstance(name, str)
            or not isinstance(content_type, str)
            or isinstance(size, bool)
            or not isinstance(size, int)
            or size < 0
        ):
            raise _refused(subject, "sent an unreadable list of artifacts")
        headers.append(ArtifactHeader(name, content_type, size))
    return headers


def _check_count(subject: str, count: int) -> None:
    """Refuse more than MAX_ARTIFACTS, before any of them is looked at."""
    if count > MAX_ARTIFACTS:
        raise _refused(
            subject,
            f"returned {count} artifacts; the limit is {MAX_ARTIFACTS}",
            artifacts=count,
            max_artifacts=MAX_ARTIFACTS,
        )


def _refused(subject: str, what: str, **details: Any) -> OutputValidationError:
    return OutputValidationError(f"{subject} {what}", details=details)
