"""Plugins that return artifacts, well and badly, for the artifact tests.

No tests here: a plugin host imports this module, so it imports no Django model.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from pydantic import BaseModel

from plugins.artifacts import Artifact, WithArtifacts
from plugins.contract import Plugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIVE_MB = 5 * 1024 * 1024


def png_bytes(size: int, seed: int = 20) -> bytes:
    """``size`` bytes that start like a PNG and are the same for the same seed."""
    return PNG_SIGNATURE + random.Random(seed).randbytes(max(size - len(PNG_SIGNATURE), 0))


class ImageInput(BaseModel):
    size: int = FIVE_MB
    seed: int = 20
    name: str = "picture.png"
    copies: int = 1
    lone_surrogate: bool = False  # no input may hold one: the plugin makes it


class ImageOutput(BaseModel):
    width: int
    height: int


class ImagePlugin(Plugin):
    """Draws a "picture" of ``size`` bytes: a small result, the image as an artifact."""

    name = "image_artifact"
    version = "1.0"
    description = "returns an image as an artifact"
    Input = ImageInput
    Output = ImageOutput

    def run(self, payload: ImageInput) -> Any:
        data = png_bytes(payload.size, payload.seed)
        name = payload.name + ("\ud800" if payload.lone_surrogate else "")
        artifacts = [Artifact(name, "image/png", data)]
        artifacts += [
            Artifact(f"copy-{index}.png", "image/png", data) for index in range(1, payload.copies)
        ]
        return WithArtifacts(ImageOutput(width=640, height=480), artifacts)


class ThreadImagePlugin(ImagePlugin):
    name = "image_artifact_thread"
    isolation = "thread"


class QuickImagePlugin(ImagePlugin):
    """A short time limit, so that its lease ends soon: for the lease-while-storing test."""

    name = "image_artifact_quick"
    isolation = "thread"
    timeout_s = 1.0


class BadInput(BaseModel):
    case: str


class Done(BaseModel):
    ok: bool = True


BAD_NAMES = {
    "slash": "a/b.png",
    "backslash": "a\\b.png",
    "dotdot": "..",
    "dot": ".",
    "nul": "a\x00b",
    "control": "a\nb",
    "empty": "",
    "right_to_left_override": "invoice\u202egnp.exe",
    "leading_space": " a.png",
    "too_long": "a" * 201,
    "lone_surrogate": "a\ud800.png",  # no UTF-8 for it: no database could store it
}


class BadArtifactsPlugin(Plugin):
    """Returns what ``case`` names; each breaks a rule (max_artifact_bytes is 1 KiB here)."""

    name = "bad_artifacts"
    version = "1.0"
    description = "returns bad artifacts"
    Input = BadInput
    Output = Done
    max_artifact_bytes: ClassVar[int] = 1024

    def run(self, payload: BadInput) -> Any:
        case = payload.case
        if case in BAD_NAMES:
            return WithArtifacts(Done(), [Artifact(BAD_NAMES[case], "text/plain", b"x")])
        if case == "oversize":
            return WithArtifacts(
                Done(), [Artifact("big.bin", "application/octet-stream", b"x" * 1025)]
            )
        if case == "too_many":
            return WithArtifacts(
                Done(), [Artifact(f"{n}.txt", "text/plain", b"x") for n in range(17)]
            )
        if case == "duplicate":
            return WithArtifacts(Done(), [Artifact("a.txt", "text/plain", b"x")] * 2)
        if case == "not_an_artifact":
            return WithArtifacts(Done(), [{"name": "a.txt", "data": b"x"}])  # type: ignore[list-item]
        if case == "text_data":
            return WithArtifacts(Done(), [Artifact("a.txt", "text/plain", "x")])  # type: ignore[arg-type]
        if case == "bad_content_type":
            return WithArtifacts(Done(), [Artifact("a.txt", "text plain", b"x")])
        if case == "bad_output":
            return WithArtifacts({"ok": "not a bool"}, [Artifact("a.txt", "text/plain", b"x")])
        return WithArtifacts(Done(), [Artifact("fine.txt", "text/plain", b"fine")])


class LyingHostPlugin(Plugin):
    """Rewrites its host's announcement of artifacts, as a hostile plugin in its host could."""

    name = "lying_host"
    version = "1.0"
    description = "its host lies about its artifacts"
    Input = BadInput
    Output = Done
    max_artifact_bytes: ClassVar[int] = 1024 * 1024

    def run(self, payload: BadInput) -> Any:
        import plugins.runtime.isolation.host as host

        case = payload.case
        lies: dict[str, Any] = {
            "smaller_than_sent": [{"name": "a.bin", "content_type": "text/plain", "size": 10}],
            "larger_than_sent": [{"name": "a.bin", "content_type": "text/plain", "size": 900}],
            "path_name": [{"name": "../../etc/passwd", "content_type": "text/plain", "size": 100}],
            # JSON's "\ud800" is a lone surrogate once the server has read it.
            "surrogate_name": [{"name": "a\ud800.png", "content_type": "text/plain", "size": 100}],
            "huge": [{"name": "a.bin", "content_type": "text/plain", "size": 10**12}],
            "many": [
                {"name": f"{n}", "content_type": "text/plain", "size": 1} for n in range(10**4)
            ],
            "garbage": "not a list",
        }
        host.announce = lambda artifacts: lies[case]  # type: ignore[attr-defined]
        return WithArtifacts(Done(), [Artifact("a.bin", "text/plain", b"y" * 100)])
