"""Plugins that report progress, for tests/plugins/test_progress.py and the fault test.

No tests here: a plugin host imports this module, so it imports no Django model.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from pydantic import BaseModel, Field

from plugins.contract import Plugin
from plugins.errors.exceptions import PluginExecutionError
from plugins.progress import ProgressError, report_progress


class StepsInput(BaseModel):
    steps: int = Field(10, ge=1, le=100_000)
    pause_ms: int = Field(0, ge=0, le=10_000)
    # A file the plugin waits for before each step (tests hold it between steps).
    gate_dir: str = ""


class StepsOutput(BaseModel):
    steps_done: int


class TenStepPlugin(Plugin):
    """Does ``steps`` steps, reporting each one; between steps it sleeps or waits for a gate."""

    name = "ten_steps"
    version = "1.0"
    description = "reports its progress step by step"
    Input = StepsInput
    Output = StepsOutput

    def run(self, payload: StepsInput) -> StepsOutput:
        report_progress(0, payload.steps, "starting")
        for step in range(1, payload.steps + 1):
            if payload.gate_dir:
                _wait_for(os.path.join(payload.gate_dir, f"step-{step}"))
            elif payload.pause_ms:
                time.sleep(payload.pause_ms / 1000)
            print(f"step {step} (stdout is not progress)")
            report_progress(step, payload.steps, f"step {step} of {payload.steps}")
        return StepsOutput(steps_done=payload.steps)


class ThreadTenStepPlugin(TenStepPlugin):
    name = "ten_steps_thread"
    isolation = "thread"


def _wait_for(path: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise PluginExecutionError(f"{path} never appeared")
        time.sleep(0.01)


class BadCallInput(BaseModel):
    call: str
    catch: bool = False


BAD_CALLS: dict[str, tuple[Any, ...]] = {
    "done_above_total": (11, 10, ""),
    "negative_done": (-1, 10, ""),
    "zero_total": (0, 0, ""),
    "float_done": (1.5, 10, ""),
    "bool_total": (1, True, ""),
    "string_total": (1, "10", ""),
    "long_message": (1, 10, "x" * 201),
    "message_not_text": (1, 10, 42),
    "nul_in_message": (1, 10, "a\x00b"),
    "lone_surrogate_in_message": (1, 10, "a\ud800b"),  # what JSON's "\\ud800" becomes
}


class Caught(BaseModel):
    caught: str | None = None
    message: str = ""


class CaughtInThreads(BaseModel):
    caught: list[str]


class BadProgressPlugin(Plugin):
    """Calls report_progress wrongly; ``catch``: it catches the error and says what it was."""

    name = "bad_progress"
    version = "1.0"
    description = "calls report_progress with bad arguments"
    Input = BadCallInput
    Output = Caught

    def run(self, payload: BadCallInput) -> dict[str, Any]:
        try:
            report_progress(*BAD_CALLS[payload.call])
        except ProgressError as exc:
            if not payload.catch:
                raise
            return {"caught": type(exc).__name__, "message": str(exc)}
        return {"caught": None}


class ThreadBadProgressPlugin(BadProgressPlugin):
    name = "bad_progress_thread"
    isolation = "thread"


class OutsideRunInput(BaseModel):
    where: str  # "thread": from a thread the plugin starts without its context


class OutsideRunPlugin(Plugin):
    """Reports progress from a thread of its own, which is not inside run's context."""

    name = "progress_outside_run"
    version = "1.0"
    description = "reports progress where it cannot"
    Input = OutsideRunInput
    Output = CaughtInThreads

    def run(self, payload: OutsideRunInput) -> dict[str, Any]:
        caught: list[str] = []

        def report() -> None:
            try:
                report_progress(1, 2, "from a thread")
            except ProgressError as exc:
                caught.append(str(exc))

        thread = threading.Thread(target=report)
        thread.start()
        thread.join()
        return {"caught": caught}


class BurstInput(BaseModel):
    reports: int = Field(1000, ge=1, le=1_000_000)


class BurstPlugin(Plugin):
    """Reports ``reports`` times as fast as it can, then returns."""

    name = "progress_burst"
    version = "1.0"
    description = "floods report_progress"
    Input = BurstInput
    Output = StepsOutput

    def run(self, payload: BurstInput) -> StepsOutput:
        for done in range(1, payload.reports + 1):
            report_progress(done, payload.reports, f"report {done}")
        return StepsOutput(steps_done=payload.reports)


class ThreadBurstPlugin(BurstPlugin):
    name = "progress_burst_thread"
    isolation = "thread"


class FloodPlugin(Plugin):
    """Reports without end: its time limit must still end it."""

    name = "progress_flood"
    version = "1.0"
    description = "reports progress forever"
    Input = BurstInput
    Output = StepsOutput
    timeout_s = 1.0

    def run(self, payload: BurstInput) -> StepsOutput:
        done = 0
        while True:
            done = done % payload.reports + 1
            report_progress(done, payload.reports, "flooding")


class LyingHostPlugin(Plugin):
    """Writes a forged progress message straight to its host's channel: the server refuses it."""

    name = "progress_forged"
    version = "1.0"
    description = "forges a progress message"
    Input = BurstInput
    Output = StepsOutput

    def run(self, payload: BurstInput) -> dict[str, Any]:
        from plugins.runtime.isolation import channel

        replies = int(sys.argv[2])  # the host's arguments: requests, replies, lifeline
        channel.send_json(replies, {"progress": {"done": 5, "total": 2, "message": ""}})
        channel.send(replies, b"")
        time.sleep(5)
        return {"steps_done": 0}


PROGRESS_PLUGINS = [
    f"{__name__}.{name}"
    for name in (
        "TenStepPlugin",
        "ThreadTenStepPlugin",
        "BadProgressPlugin",
        "ThreadBadProgressPlugin",
        "OutsideRunPlugin",
        "BurstPlugin",
        "ThreadBurstPlugin",
        "FloodPlugin",
        "LyingHostPlugin",
    )
]
