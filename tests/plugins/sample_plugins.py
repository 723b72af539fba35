"""Plugins for the tests: well-behaved ones and every way a plugin can misbehave.

The misbehaving ones break their declared return type on purpose (type: ignore[override]).
"""

import ctypes
import os
import stat
import subprocess
import sys
import threading
import time
from typing import ClassVar

from pydantic import BaseModel, field_validator

from plugins.contract import Plugin
from plugins.errors.exceptions import (
    InputValidationError,
    PluginExecutionError,
    PluginTimeoutError,
)


class EchoInput(BaseModel):
    message: str
    repeat: int = 1


class EchoOutput(BaseModel):
    echoed: str


class EchoPlugin(Plugin):
    name = "echo"
    version = "1.0"
    description = "Repeats the message."
    Input = EchoInput
    Output = EchoOutput

    def __init__(self) -> None:
        self.calls: list[EchoInput] = []

    def run(self, payload: EchoInput) -> EchoOutput:
        self.calls.append(payload)
        return EchoOutput(echoed=payload.message * payload.repeat)


class DictEchoPlugin(EchoPlugin):
    name = "dict_echo"

    def run(self, payload: EchoInput) -> dict[str, str]:  # type: ignore[override]
        return {"echoed": payload.message}


class RaisingPlugin(EchoPlugin):
    name = "raising"

    def run(self, payload: EchoInput) -> EchoOutput:
        raise ValueError("secret connection string postgres://user:pw@db")


class NoneReturningPlugin(EchoPlugin):
    name = "returns_none"

    def run(self, payload: EchoInput) -> None:  # type: ignore[override]
        return None


class WrongOutputPlugin(EchoPlugin):
    name = "wrong_output"

    def run(self, payload: EchoInput) -> dict[str, int]:  # type: ignore[override]
        return {"unexpected": 1}


class ListOutputPlugin(EchoPlugin):
    name = "list_output"

    def run(self, payload: EchoInput) -> list[str]:  # type: ignore[override]
        return ["not", "a", "dict"]


class SystemExitPlugin(EchoPlugin):
    name = "exits"

    def run(self, payload: EchoInput) -> EchoOutput:
        raise SystemExit(3)


class SlowPlugin(EchoPlugin):
    """Blocks until released (or 10 s), so tests control exactly when it ends."""

    name = "slow"
    timeout_s: ClassVar[float | None] = 0.2
    release = threading.Event()

    def run(self, payload: EchoInput) -> EchoOutput:
        self.release.wait(10)
        return EchoOutput(echoed="late")


class NoOpPlugin(Plugin):
    name = "noop"
    version = "1.0"
    description = "Does nothing, fast."

    class Input(BaseModel):
        pass

    class Output(BaseModel):
        pass

    def run(self, payload: BaseModel) -> dict[str, object]:
        return {}


class SleepyPlugin(NoOpPlugin):
    name = "sleepy"

    def run(self, payload: BaseModel) -> dict[str, object]:
        time.sleep(0.001)
        return {}


class ImpostorEchoPlugin(EchoPlugin):
    """Claims a name another plugin already holds."""

    name = "echo"


# Plugins that misbehave the way real ones do: they must not hurt the caller ------------


class CrashingPlugin(EchoPlugin):
    """Ends its own process with the exit code given as ``repeat``."""

    name = "crashing"

    def run(self, payload: EchoInput) -> EchoOutput:
        os._exit(payload.repeat)


class SegfaultingPlugin(EchoPlugin):
    name = "segfaulting"

    def run(self, payload: EchoInput) -> EchoOutput:
        ctypes.string_at(0)
        return EchoOutput(echoed="unreachable")


class SpinningPlugin(EchoPlugin):
    """A busy loop that never returns."""

    name = "spinning"
    timeout_s: ClassVar[float | None] = 0.5

    def run(self, payload: EchoInput) -> EchoOutput:
        while True:
            pass


class SpawningPlugin(EchoPlugin):
    """Starts a long-lived process (a Python: the sandbox runs no other program), then spins.

    ``-I -S``: without them the child reads the venv's pyvenv.cfg, which the sandbox
    hides, and dies at once, so nothing would be left for the host's kill to find.
    """

    name = "spawning"
    timeout_s: ClassVar[float | None] = 1.0

    def run(self, payload: EchoInput) -> EchoOutput:
        subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(300)"])
        while True:
            pass


class MemoryHogPlugin(EchoPlugin):
    """Allocates ``repeat`` MiB at once."""

    name = "memory_hog"
    max_memory_mb: ClassVar[int | None] = 256

    def run(self, payload: EchoInput) -> EchoOutput:
        hoard = bytearray(payload.repeat * 1024 * 1024)
        return EchoOutput(echoed=str(len(hoard)))


class HugeResultPlugin(EchoPlugin):
    """Returns ``repeat`` KiB of text."""

    name = "huge_result"

    def run(self, payload: EchoInput) -> EchoOutput:
        return EchoOutput(echoed="x" * (payload.repeat * 1024))


class SlowValidationInput(EchoInput):
    @field_validator("message")
    @classmethod
    def takes_its_time(cls, value: str) -> str:
        time.sleep(float(value))
        return value


class SlowValidatorPlugin(EchoPlugin):
    """Its validator sleeps ``message`` seconds: validation is plugin code, under the limit."""

    name = "slow_validator"
    Input = SlowValidationInput
    timeout_s: ClassVar[float | None] = 0.3


class SleepingPlugin(EchoPlugin):
    """Sleeps ``repeat`` milliseconds (tests find its process with tests/plugin_hosts.py)."""

    name = "sleeping"

    def run(self, payload: EchoInput) -> EchoOutput:
        time.sleep(payload.repeat / 1000)
        return EchoOutput(echoed=f"slept {payload.repeat} ms")


class RetriedSleepingPlugin(SleepingPlugin):
    name = "retried_sleeping"
    max_attempts = 3


class ProcessInfoPlugin(NoOpPlugin):
    """Reports where it runs: pid, runs of this instance, its module's import, fds, environment."""

    name = "process_info"
    LOCALE = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")

    def __init__(self) -> None:
        self.runs = 0

    def run(self, payload: BaseModel) -> dict[str, object]:
        self.runs += 1
        fds, kinds = [], []
        for fd in range(1024):  # by fstat: a sandboxed host cannot read /proc
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            fds.append(fd)
            kinds.append(_file_kind(mode))
        return {
            "pid": os.getpid(),
            "runs": self.runs,
            "module_imported_at": MODULE_IMPORTED_AT,
            "open_fds": fds,
            "fd_kinds": kinds,
            "environment": sorted(os.environ),
            "passed_locale": [name for name in self.LOCALE if name in os.environ],
        }

    class Output(BaseModel):
        pid: int
        runs: int
        module_imported_at: float
        open_fds: list[int]
        fd_kinds: list[str]
        environment: list[str]
        passed_locale: list[str]


def _file_kind(mode: int) -> str:
    for kind, test in (
        ("fifo", stat.S_ISFIFO),
        ("socket", stat.S_ISSOCK),
        ("file", stat.S_ISREG),
        ("char", stat.S_ISCHR),
        ("dir", stat.S_ISDIR),
    ):
        if test(mode):
            return kind
    return "other"


class SneakyPlugin(EchoPlugin):
    """Tries to run another plugin directly, from inside its own run."""

    name = "sneaky"

    def run(self, payload: EchoInput) -> EchoOutput:
        return EchoPlugin().run(payload)  # governance: allow[GOV001] tests the guard in a child


MODULE_IMPORTED_AT = time.time()


class _Trap:
    """An object that runs a command in whatever process unpickles it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))

    def __repr__(self) -> str:
        return "<trap>"


class PicklingTrapPlugin(EchoPlugin):
    """Raises an error whose message and details would run code where they are unpickled."""

    name = "pickling_trap"

    def run(self, payload: EchoInput) -> EchoOutput:
        trap = _Trap(payload.message)
        raise PluginExecutionError(trap, details={"trap": trap})  # type: ignore[arg-type]


class HugeErrorPlugin(EchoPlugin):
    """Raises an error with ``repeat`` MiB of message."""

    name = "huge_error"

    def run(self, payload: EchoInput) -> EchoOutput:
        raise ValueError("x" * (payload.repeat * 1024 * 1024))


class _ExplodingRepr:
    def __repr__(self) -> str:
        raise SystemExit("repr of a detail")


class BrokenDetailsPlugin(EchoPlugin):
    """Raises an error whose details break when they are reported."""

    name = "broken_details"

    def run(self, payload: EchoInput) -> EchoOutput:
        raise PluginExecutionError("bad details", details={"oops": _ExplodingRepr()})


class SpoofingPlugin(EchoPlugin):
    """Raises the errors only ToolRunner may report: refused input, a time limit."""

    name = "spoofing"

    def run(self, payload: EchoInput) -> EchoOutput:
        if payload.message == "input":
            raise InputValidationError("pretend the input was bad", plugin=self.name)
        raise PluginTimeoutError("pretend the time ran out")


_hoard: list[bytearray] = []


class LeakyPlugin(EchoPlugin):
    """Keeps everything it allocates, in its module, until its memory limit stops it."""

    name = "leaky"
    max_memory_mb: ClassVar[int | None] = 128

    def run(self, payload: EchoInput) -> EchoOutput:
        while payload.repeat:
            _hoard.append(bytearray(16 * 1024 * 1024))
        return EchoOutput(echoed=f"holding {len(_hoard)} blocks")


class RunSpanOutput(BaseModel):
    started: float
    ended: float


class OneAtATimePlugin(Plugin):
    """Needs the one GPU: at most one run fleet-wide. Sleeps ``repeat`` ms, says when it ran."""

    name = "one_at_a_time"
    version = "1.0"
    Input = EchoInput
    Output = RunSpanOutput
    max_concurrency = 1

    def run(self, payload: EchoInput) -> RunSpanOutput:
        started = time.time()
        time.sleep(payload.repeat / 1000)
        return RunSpanOutput(started=started, ended=time.time())


class WitnessedRunInput(BaseModel):
    job_id: str
    """The id of the job this payload belongs to (the submitter chose it)."""
    witness: str
    """The absolute path of the file each run appends ``job_id`` to."""
    sleep_ms: int = 0


class WitnessedRunPlugin(Plugin):
    """Sleeps ``sleep_ms``, then appends its job's id to the witness file: one line per run.

    The file is written outside the database and the worker, by the plugin itself, so
    it tells how often a job's plugin really ran to its end. A sandboxed host may
    write only its own temporary directory (emptied before each execution), so its
    tests run it with ``PLUGIN_SANDBOX=off``: still in a host process of its own.
    """

    name = "witnessed_run"
    version = "1.0"
    description = "Sleeps, then appends its job's id to a file."
    Input = WitnessedRunInput
    Output = EchoOutput

    def run(self, payload: WitnessedRunInput) -> EchoOutput:
        time.sleep(payload.sleep_ms / 1000)
        # One write of one short line with O_APPEND: lines of concurrent runs never mix.
        fd = os.open(payload.witness, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{payload.job_id}\n".encode())
        finally:
            os.close(fd)
        return EchoOutput(echoed=payload.job_id)
