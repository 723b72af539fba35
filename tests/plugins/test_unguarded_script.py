"""A script that runs plugins needs no ``if __name__ == "__main__":`` guard.

Plugin hosts are started as ``python -I -c <bootstrap>`` and import only the plugin's
module, never the caller's ``__main__`` (plugins/runtime/isolation/process.py), so a
script's body runs once however many host processes its executions start. Each
script appends a line to a file per run of its body; a plugin defined in the script
itself fails at once, with a message that says how to fix it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.any_database
RUNS = 4

# No guard: everything below runs at import, as in the script that ran 603 times.
WITH_THE_HELPER = """
import json, sys
from plugins.testing import run_plugin
from tests.plugins.script_plugins import FreshPidPlugin

with open(sys.argv[1], "a") as runs:
    runs.write("body\\n")
pids = []
for _ in range({runs}):
    result, error = run_plugin(FreshPidPlugin, {{}})
    assert error is None, error
    pids.append(result["pid"])
print(json.dumps(pids))
"""

WITH_THE_PROJECTS_RUNNER = """
import json, sys
import django
django.setup()
from plugins.runtime.tool_runner import ToolRunner

with open(sys.argv[1], "a") as runs:
    runs.write("body\\n")
runner = ToolRunner()
pids = []
for _ in range({runs}):
    result, error = runner.run("pid", {{}})
    assert error is None, error
    pids.append(result["pid"])
print(json.dumps(pids))
"""

PLUGIN_IN_THE_SCRIPT = """
import sys
from pydantic import BaseModel
from plugins.contract import Plugin
from plugins.testing import run_plugin

with open(sys.argv[1], "a") as runs:
    runs.write("body\\n")

class Empty(BaseModel):
    pass

class ScriptPlugin(Plugin):
    name = "in_the_script"
    version = "1.0"
    description = "Defined in __main__."
    Input = Empty
    Output = Empty

    def run(self, payload):
        return {{}}

run_plugin(ScriptPlugin, {{}})
"""


def clean_environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment without the test session's Django settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DATABASE_URL"}
        and not name.startswith(("PLUGIN_", "COV_CORE_"))
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_script(tmp_path: Path, source: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``source`` as a script; return how often its body ran, its stdout and stderr."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(source.format(runs=RUNS)))
    counter = tmp_path / "runs.txt"
    completed = subprocess.run(
        [sys.executable, str(script), str(counter)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    body_runs = counter.read_text().count("body\n") if counter.exists() else 0
    return body_runs, completed.stdout, completed.stderr + f"\nexit {completed.returncode}"


def test_a_script_using_the_test_helper_runs_its_body_once(tmp_path):
    body_runs, stdout, stderr = run_script(tmp_path, WITH_THE_HELPER, clean_environment())
    assert stdout, stderr
    pids = json.loads(stdout)
    assert len(set(pids)) == RUNS  # a fresh host process each time
    assert os.getpid() not in pids
    assert body_runs == 1


def test_a_script_using_the_projects_tool_runner_runs_its_body_once(tmp_path):
    env = clean_environment(
        DJANGO_SETTINGS_MODULE="project.settings",
        SECRET_KEY="test-only-secret-key",
        PLUGINS="tests.plugins.script_plugins.PidPlugin",
        PLUGIN_METRICS_ENABLED="0",  # no database: the script runs plugins only
        PLUGIN_MAX_EXECUTIONS_PER_HOST="1",  # a new host for every execution
        PLUGIN_WARM_HOSTS="0",
    )
    body_runs, stdout, stderr = run_script(tmp_path, WITH_THE_PROJECTS_RUNNER, env)
    assert stdout, stderr
    assert len(set(json.loads(stdout))) == RUNS
    assert body_runs == 1


def test_a_plugin_defined_in_the_script_fails_at_once_and_says_why(tmp_path):
    body_runs, _, stderr = run_script(tmp_path, PLUGIN_IN_THE_SCRIPT, clean_environment())
    assert "exit 1" in stderr
    assert "__main__.ScriptPlugin must be importable by its module path" in stderr
    assert "define it at module level, or set isolation = 'thread'" in stderr
    assert body_runs == 1
