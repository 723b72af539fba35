"""TASKS_BACKEND and CELERY_BROKER_URL, read with the care DATABASE_URL is: no Celery needed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from execution.task_engine.celery_tasks.broker import broker_url_from_env, check_broker_url
from tests.conftest import ROOT


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@redis.internal:6380/2",
        "rediss://redis.internal:6380/0",
        "redis+socket:///run/redis/redis.sock",
        "amqp://guest:guest@rabbit:5672//",
    ],
)
def test_usable_broker_urls_are_kept(url):
    assert check_broker_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379/0", "unsupported scheme 'http'"),
        ("127.0.0.1:6379", "unsupported scheme"),
        ("redis://:6379/0", "no host"),
        ("redis://127.0.0.1:6379/zero", "must be a number"),
        ("redis://127.0.0.1:port/0", "not a valid URL"),
        ("redis+socket://", "no socket path"),
        ("amqp:///", "no host"),
    ],
)
def test_malformed_broker_urls_are_refused_saying_why(url, why):
    with pytest.raises(ImproperlyConfigured, match=why):
        check_broker_url(url)


def test_a_missing_broker_url_names_the_setting(monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    with pytest.raises(ImproperlyConfigured, match="TASKS_BACKEND=celery needs CELERY_BROKER_URL"):
        broker_url_from_env()


def _settings_error(**env: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", "import project.settings"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    return completed.stderr.strip().splitlines()[-1]


def test_settings_refuse_an_unknown_engine_and_celery_without_its_broker():
    assert "TASKS_BACKEND must be 'database' or 'celery'" in _settings_error(TASKS_BACKEND="rabbit")
    assert "needs CELERY_BROKER_URL" in _settings_error(TASKS_BACKEND="celery")


def test_the_default_engine_is_the_database():
    from django.conf import settings

    assert settings.TASKS_BACKEND == "database"
    assert settings.TASK_ENGINE.endswith("DjangoTasksDbEngine")
    assert settings.CELERY_TASK_ACKS_LATE
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
