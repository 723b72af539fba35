"""The documented deployment (deploy/) as it is: units, environment, checks, safe defaults."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.any_database

DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "governed.env.example"
UNITS = sorted((DEPLOY / "systemd").iterdir())
# Read by libraries (Django, prometheus-client, dj-database-url), not by name in settings.py.
READ_ELSEWHERE = {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL"}
NO_SECRET_KEY = "SECRET_KEY must be set when DEBUG is off (export SECRET_KEY=... or DEBUG=1)."


def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_environment_example_names_only_settings_the_project_reads():
    settings_source = (ROOT / "project" / "settings.py").read_text()
    read = set(
        re.findall(r"""(?:env_\w+|environ\.get)\(\s*["']([A-Z0-9_]+)["']""", settings_source)
    )
    names = set(example_env())
    assert names - read - READ_ELSEWHERE == set()
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "STATIC_ROOT"} <= names


def test_the_systemd_units_verify(tmp_path):
    """systemd-analyze checks every unit as systemd would load it, with this checkout's paths."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (apt-get install systemd); .ci/run installs it"
    env_file = tmp_path / "governed.env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    for unit in UNITS:
        text = unit.read_text().replace("/etc/governed/governed.env", str(env_file))
        (tmp_path / unit.name).write_text(text.replace("/srv/governed", str(ROOT)))
    names = [unit.name.replace("@.", "@1.") for unit in UNITS]
    completed = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Unknown keys are only warned about: none may be there.
    assert "Unknown key" not in completed.stderr, completed.stderr


def test_every_unit_reads_the_environment_file_and_runs_from_the_project():
    for unit in UNITS:
        text = unit.read_text()
        if unit.suffix != ".service":
            continue
        assert "EnvironmentFile=/etc/governed/governed.env" in text, unit.name
        for command, arguments in re.findall(r"^Exec\w+=(\S+) ?(.*)$", text, re.MULTILINE):
            assert command.startswith(("/srv/governed/.venv/bin/", "/bin/")), (unit.name, command)
            for script in re.findall(r"\S+\.py\b", arguments):  # relative to WorkingDirectory
                assert (ROOT / script).is_file(), (unit.name, script)


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    env = subprocess_env(
        **{
            **example_env(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "STATIC_ROOT": str(tmp_path / "static"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
    )
    (tmp_path / "metrics").mkdir()
    return env


def test_check_deploy_finds_nothing_in_the_documented_environment(production_env):
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "System check identified no issues (0 silenced)." in completed.stdout


def test_manage_py_leaves_debug_off(production_env):
    env = {**production_env}
    env.pop("DEBUG")
    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.stdout.strip().splitlines()[-1] == "False", completed.stdout + completed.stderr


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "manage.py", "db_worker"],
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "project.wsgi:application"],
    ],
    ids=["db_worker", "gunicorn"],
)
def test_without_a_secret_key_the_server_and_the_worker_stop_with_one_line(production_env, command):
    env = {**production_env, "SECRET_KEY": ""}
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    assert NO_SECRET_KEY in completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr


def test_commands_that_sign_nothing_run_in_a_bare_environment(tmp_path):
    """CI runs the scanner with no settings at all; migrate needs no key either."""
    bare = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    for command in (["scan_violations"], ["migrate", "--verbosity", "0"]):
        completed = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=bare,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "Traceback" not in completed.stderr, completed.stderr


LIVE_GAUGE_AND_COUNTER = """
from prometheus_client import Counter, Gauge
Gauge("in_flight", "runs", multiprocess_mode="livesum").inc()
Counter("runs", "runs").inc()
"""


def test_the_live_gauges_of_exited_processes_are_forgotten_and_counters_kept(tmp_path):
    """deploy/prometheus_multiproc.py, run when a db_worker stops (mark_process_dead)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    exited = subprocess.run(
        [sys.executable, "-c", LIVE_GAUGE_AND_COUNTER], env=env, check=True, timeout=60
    )
    assert exited.returncode == 0
    running = subprocess.Popen(
        [sys.executable, "-c", LIVE_GAUGE_AND_COUNTER + "print('ready', flush=True); input()"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout is not None
        assert running.stdout.readline() == "ready\n"
        before = sorted(path.name for path in metrics_dir.iterdir())
        assert len([name for name in before if name.startswith("gauge_livesum_")]) == 2
        subprocess.run(
            [sys.executable, "deploy/prometheus_multiproc.py"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
        after = sorted(path.name for path in metrics_dir.iterdir())
    finally:
        running.communicate("", timeout=60)
    assert [name for name in after if name.startswith("gauge_")] == [
        f"gauge_livesum_{running.pid}.db"
    ]
    assert len([name for name in after if name.startswith("counter_")]) == 2


def test_gunicorn_forgets_an_exited_workers_live_gauges(tmp_path, monkeypatch):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "gauge_livesum_4242.db").write_bytes(b"")
    (metrics_dir / "counter_4242.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    config: dict[str, object] = {}
    exec(compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), config)

    class Worker:
        pid = 4242

    config["child_exit"](None, Worker())
    assert sorted(path.name for path in metrics_dir.iterdir()) == ["counter_4242.db"]
