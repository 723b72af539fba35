"""A plugin that reports what its process can see of the audit's signing key."""

from __future__ import annotations

import os

from pydantic import BaseModel

from plugins.contract import Plugin


class ProbeInput(BaseModel):
    names: list[str]


class ProbeOutput(BaseModel):
    pid: int
    in_environ: dict[str, bool]
    in_settings: dict[str, bool]


class EnvironmentProbePlugin(Plugin):
    name = "environment_probe"
    version = "1"
    description = "Says which of the given names its process has in os.environ and settings."
    Input = ProbeInput
    Output = ProbeOutput

    def run(self, payload: ProbeInput) -> ProbeOutput:
        from django.conf import settings

        return ProbeOutput(
            pid=os.getpid(),
            in_environ={name: name in os.environ for name in payload.names},
            in_settings={name: hasattr(settings, name) for name in payload.names},
        )
