"""The benchmarks' no-op plugin, in a module of its own: a plugin host imports only this.

(bench_app.py, beside it, is Django code: views and a task, which a host could not load.)
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from plugins.contract import Plugin


class NoOpInput(BaseModel):
    pass


class NoOpOutput(BaseModel):
    pass


class BenchNoOpPlugin(Plugin):
    name = "bench_noop"
    version = "1"
    description = "Does nothing; for benchmarks."
    Input = NoOpInput
    Output = NoOpOutput

    def run(self, payload: NoOpInput) -> dict[str, Any]:
        return {}


class FreshNoOpPlugin(BenchNoOpPlugin):
    """The same, in a new host process for every execution."""

    name = "bench_noop_fresh"
    fresh_process = True


class SleepInput(BaseModel):
    ms: int = 20


class BenchSleepPlugin(Plugin):
    """Sleeps ``ms`` milliseconds: a job that waits, as one on I/O would."""

    name = "bench_sleep"
    version = "1"
    description = "Sleeps; for benchmarks."
    Input = SleepInput
    Output = NoOpOutput

    def run(self, payload: SleepInput) -> dict[str, Any]:
        time.sleep(payload.ms / 1000)
        return {}
