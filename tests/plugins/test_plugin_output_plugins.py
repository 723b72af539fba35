"""Hostile plugins for tests/plugins/test_plugin_output.py: they print, a lot, everywhere.

No tests here: a plugin host imports this module, so it imports no Django model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import ClassVar

from pydantic import BaseModel

from plugins.contract import Plugin


class Empty(BaseModel):
    pass


class Done(BaseModel):
    ok: bool = True


class _Printing(Plugin):
    version = "1.0"
    description = "prints"
    Input = Empty
    Output = Done


class TenMegabytesPlugin(_Printing):
    name = "prints_ten_mb"

    def run(self, payload: Empty) -> Done:
        line = "x" * 1023 + "\n"
        for _ in range(10 * 1024):
            sys.stdout.write(line)
        return Done()


class RawStderrPlugin(_Printing):
    name = "writes_fd_two"

    def run(self, payload: Empty) -> Done:
        os.write(2, b"straight to fd 2\n")
        print("and some stdout")
        return Done()


class PrintsThenCrashesPlugin(_Printing):
    name = "prints_then_crashes"

    def run(self, payload: Empty) -> Done:
        print("last words before the crash", flush=True)
        os._exit(3)


class ForkedPrinterPlugin(_Printing):
    name = "forked_printer"
    timeout_s: ClassVar[float | None] = 1.0

    def run(self, payload: Empty) -> Done:
        subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                "import time\nwhile True:\n print('child', flush=True)\n time.sleep(0.01)",
            ]
        )
        print("parent printed", flush=True)
        time.sleep(0.3)
        return Done()


class QuietPlugin(_Printing):
    name = "quiet"

    def run(self, payload: Empty) -> Done:
        return Done()


class PrintsThenSpinsPlugin(_Printing):
    name = "prints_then_spins"
    timeout_s: ClassVar[float | None] = 0.5

    def run(self, payload: Empty) -> Done:
        print("about to spin", flush=True)
        while True:
            pass
