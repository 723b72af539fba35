"""Plugins that ask their sandbox for something: the network, a path to read."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from plugins.contract import Plugin


class Target(BaseModel):
    target: str


class Outcome(BaseModel):
    outcome: str


class NetworkedPlugin(Plugin):
    """Connects to 127.0.0.1:<target>; says what happened."""

    name = "networked"
    version = "1"
    Input = Target
    Output = Outcome
    network: ClassVar[bool] = True

    def run(self, payload: Target) -> Outcome:
        try:
            with socket.create_connection(("127.0.0.1", int(payload.target)), timeout=2):
                return Outcome(outcome="connected")
        except OSError as exc:
            return Outcome(outcome=f"refused: {type(exc).__name__}")


class ReaderPlugin(Plugin):
    """Reads the file named by ``target``; says what happened."""

    name = "reader"
    version = "1"
    Input = Target
    Output = Outcome
    read_paths: ClassVar[tuple[str, ...]] = ("/tmp/governed-reader-plugin",)

    def run(self, payload: Target) -> Outcome:
        try:
            return Outcome(outcome=Path(payload.target).read_text())
        except OSError as exc:
            return Outcome(outcome=f"refused: {type(exc).__name__}")


class GreedyPlugin(ReaderPlugin):
    """Asks to read the folder that holds the project."""

    name = "greedy"
    read_paths: ClassVar[tuple[str, ...]] = (str(Path(__file__).resolve().parents[3]),)
