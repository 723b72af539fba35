"""Plugins that say which process ran them, for the unguarded-script tests."""

import os

from pydantic import BaseModel

from plugins.contract import Plugin


class PidInput(BaseModel):
    pass


class PidOutput(BaseModel):
    pid: int


class PidPlugin(Plugin):
    name = "pid"
    version = "1.0"
    description = "Returns the id of the process it ran in."
    Input = PidInput
    Output = PidOutput

    def run(self, payload: PidInput) -> PidOutput:
        return PidOutput(pid=os.getpid())


class FreshPidPlugin(PidPlugin):
    """A new host process for every execution."""

    name = "fresh_pid"
    fresh_process = True
