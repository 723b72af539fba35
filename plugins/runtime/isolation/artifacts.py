"""Artifacts across the isolation seam: from where the plugin ran to the server, as files.

A plugin side's function returns the result's JSON text; when the plugin returned
artifacts too, that text is a :class:`ResultWithArtifacts`, which carries them. From a
host, they follow the result message on the channel: the header announces each one's
name, content type and size, and one raw frame per artifact follows, which the
server streams into a temporary file of its own, hashing as it reads. The server
checks the announced list (count, names, sizes) before it reads a byte of them and
reads each frame with the size announced as its limit, so a host cannot make it
write anywhere but its own temporary files, nor hold more than the plugin's limits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import plugins.runtime.isolation.channel as channel
from plugins.artifacts import (
    Artifact,
    ArtifactHeader,
    check_headers,
    header_of,
    headers_from_report,
)


class ResultWithArtifacts(bytes):
    """A result's JSON text, and the artifacts that came with it."""

    artifacts: tuple[Any, ...]

    def __new__(cls, data: bytes, artifacts: Iterable[Any]) -> ResultWithArtifacts:
        value = super().__new__(cls, data)
        value.artifacts = tuple(artifacts)
        return value


def with_artifacts(data: bytes, artifacts: Sequence[Any]) -> bytes:
    """``data`` as it is when there are no artifacts (nearly always), else carrying them."""
    return ResultWithArtifacts(data, artifacts) if artifacts else data


def artifacts_of(data: bytes) -> tuple[Any, ...]:
    return getattr(data, "artifacts", ())


@dataclass
class ReceivedArtifact:
    """An artifact the server holds: its bytes in a file (at position 0), their SHA-256."""

    name: str
    content_type: str
    size: int
    sha256: str
    file: IO[bytes] = field(repr=False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def close_all(artifacts: Iterable[ReceivedArtifact]) -> None:
    for artifact in artifacts:
        artifact.close()


def received(artifacts: Iterable[Any]) -> tuple[ReceivedArtifact, ...]:
    """Artifacts as the server keeps them, whether they came from a host or from a thread."""
    kept = []
    for artifact in artifacts:
        if isinstance(artifact, ReceivedArtifact):
            kept.append(artifact)
        elif isinstance(artifact, Artifact):  # thread isolation: made in this process
            data = bytes(artifact.data)
            kept.append(
                ReceivedArtifact(
                    artifact.name,
                    artifact.content_type,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    io.BytesIO(data),
                )
            )
    return tuple(kept)


# A host's side -------------------------------------------------------------------------


def announce(artifacts: Sequence[Artifact]) -> list[dict[str, Any]]:
    """What the result message's header says of each artifact."""
    return [header_of(artifact).as_report() for artifact in artifacts]


def send_all(fd: int, artifacts: Sequence[Artifact]) -> None:
    """One raw frame per artifact, in the announced order."""
    for artifact in artifacts:
        channel.send(fd, bytes(artifact.data))


# The server's side -------------------------------------------------------------------


def receive_all(
    fd: int, report: object, *, max_bytes: int, max_total_bytes: int | None = None, deadline: float
) -> tuple[ReceivedArtifact, ...]:
    """Read the artifacts a host announced in ``report``, each into a temporary file.

    Raises OutputValidationError when the announcement breaks a limit (nothing read)
    or a frame is not what was announced; channel errors as ``channel.receive``.
    """
    headers = headers_from_report("The plugin's process", report)
    check_headers("The plugin's process", headers, max_bytes, max_total_bytes)
    kept: list[ReceivedArtifact] = []
    try:
        for header in headers:
            kept.append(_receive_one(fd, header, deadline))
    except BaseException:
        close_all(kept)
        raise
    return tuple(kept)


def _receive_one(fd: int, header: ArtifactHeader, deadline: float) -> ReceivedArtifact:
    file = tempfile.TemporaryFile()  # noqa: SIM115  # handed on, closed by its owner
    digest = hashlib.sha256()

    def keep(chunk: bytes) -> None:
        digest.update(chunk)
        file.write(chunk)

    try:
        size = channel.receive_into(fd, keep, header.size, deadline)
        if size != header.size:
            raise channel.FrameTooLarge(size, header.size)  # shorter than announced: as bad
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return ReceivedArtifact(header.name, header.content_type, size, digest.hexdigest(), file)
