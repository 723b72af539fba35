"""A plugin whose version is read from a file when its module is imported.

Imported by the test process at one version and by its child process after the
file changed, it is "a plugin upgraded between submit and run". Each run it
makes is logged to a file, so a test can tell that nothing ran.
"""

from pathlib import Path

from plugins.contract import Plugin
from tests.plugins.sample_plugins import EchoInput, EchoOutput

# Not tempfile's folder: in a host that is the host's own temporary directory.
STATE = Path("/tmp/governed-versioned-plugin")
VERSION_FILE = STATE / "version"
RUNS_FILE = STATE / "runs"


def _installed_version() -> str:
    try:
        return VERSION_FILE.read_text().strip() or "1.0"
    except OSError:
        return "1.0"


class VersionedPlugin(Plugin):
    name = "versioned"
    version = _installed_version()
    description = "Echoes, at whatever version its module found when it was imported."
    Input = EchoInput
    Output = EchoOutput

    def run(self, payload: EchoInput) -> EchoOutput:
        with RUNS_FILE.open("a") as runs:
            runs.write(f"{self.version} {payload.message}\n")
        return EchoOutput(echoed=payload.message)
