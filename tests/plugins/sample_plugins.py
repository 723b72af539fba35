"""Plugins for the tests: well-behaved ones and every way a plugin can misbehave.

The misbehaving ones break their declared return type on purpose (type: ignore[override]).
"""

import threading
import time
from typing import ClassVar

from pydantic import BaseModel

from plugins.contract import Plugin


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
