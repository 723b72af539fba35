"""Shared set-up of the benchmarks: a scratch database, Django, a user and a token.

Every benchmark process (this one and the servers and workers it starts) runs with
the API's rate limits off (``THROTTLES_OFF``): a benchmark sends far more than a user may.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
THROTTLES_OFF = dict.fromkeys(
    ("API_THROTTLE_BURST", "API_THROTTLE_SUSTAINED", "API_THROTTLE_AUTH_FAILURES"), "off"
)


def bench_env(database_url: str) -> dict[str, str]:
    """Environment for benchmark processes (server, workers) on ``database_url``."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only"),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(ROOT)]),
        # Rate limits off: a benchmark sends far more than a user may (docs/configuration.md).
        **THROTTLES_OFF,
    }


def setup_django(database_url: str | None = None) -> str:
    """Configure Django in this process on a fresh database and migrate it."""
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/bench.sqlite3"
    os.environ.update(bench_env(database_url))
    for path in (str(ROOT), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return database_url


def describe_database() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
        version = sqlite3.sqlite_version
        return f"SQLite {version}, journal_mode={journal}, synchronous={synchronous}"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        commit = cursor.fetchone()[0]
    return f"PostgreSQL {version}, synchronous_commit={commit}"


def bench_user(username: str = "bench") -> Any:
    """The benchmarks' user: no superuser, granted the benchmark plugins, as a client would be.

    Policy is on (PLUGIN_ACCESS=restricted, the default quotas), but the grants lift
    the active-jobs cap: worker_throughput queues thousands of jobs at once.
    """
    from django.contrib.auth import get_user_model

    from execution.policy.models import PluginGrant

    user, _ = get_user_model().objects.get_or_create(username=username)
    for plugin in ("bench_noop", "bench_noop_fresh", "bench_sleep"):
        PluginGrant.objects.get_or_create(
            plugin_name=plugin, user=user, defaults={"max_active_jobs": 0}
        )
    return user


def api_token() -> str:
    from execution.policy.tokens import create_token

    return create_token(user=bench_user()).key
