import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from execution.policy.token_models import ApiToken
from execution.policy.tokens import token_digest

ROOT = Path(__file__).resolve().parent.parent


SHOW_DATABASE = (
    "import project.settings as s; "
    "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default'].get('OPTIONS'))"
)


def import_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            SHOW_DATABASE,
        ],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_leave_the_secret_key_empty_when_debug_is_off():
    """Empty, so that Django refuses it wherever something reads it."""
    completed = subprocess.run(
        [sys.executable, "-c", "import project.settings as s; print(repr(s.SECRET_KEY))"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "''"


def test_debug_runs_without_a_secret_key_on_sqlite_in_wal_mode():
    completed = import_settings(DEBUG="1")
    assert completed.returncode == 0, completed.stderr
    assert "sqlite3" in completed.stdout
    assert "journal_mode=WAL" in completed.stdout
    assert "'transaction_mode': 'IMMEDIATE'" in completed.stdout


def test_database_url_selects_the_database():
    completed = import_settings(SECRET_KEY="k", DATABASE_URL="postgres://u:p@localhost:5432/db")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("django.db.backends.postgresql None")


@pytest.mark.django_db
def test_the_test_database_really_runs_in_wal_mode():
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("journal modes are SQLite's; this run is on " + connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db
def test_seed_local_admin_creates_a_superuser_and_a_token(settings, capsys):
    settings.DEBUG = True
    call_command("seed_local_admin")
    first = capsys.readouterr().out
    user = get_user_model().objects.get(username="admin")
    (token,) = ApiToken.objects.filter(user=user)
    first_key = first.split("Authorization: Token ")[1].split()[0]
    assert token.digest == token_digest(first_key)  # only the digest is kept
    assert first_key not in str(list(ApiToken.objects.values()))
    assert user.is_superuser
    assert user.is_staff
    password = first.split("password '")[1].split("'")[0]
    assert user.check_password(password)
    call_command("seed_local_admin", base_url="http://127.0.0.1:8123")
    second = capsys.readouterr().out
    assert "refreshed" in second
    second_key = second.split("Authorization: Token ")[1].split()[0]
    assert second_key != first_key  # the first cannot be shown again: a new one is made
    assert "a new token each run" in second
    assert ApiToken.objects.filter(user=user).count() == 2
    assert "http://127.0.0.1:8123/admin/" in second  # where make run serves it
    assert "http://127.0.0.1:8000" not in second


@pytest.mark.django_db
def test_seed_local_admin_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG off"):
        call_command("seed_local_admin")
    assert not get_user_model().objects.exists()
