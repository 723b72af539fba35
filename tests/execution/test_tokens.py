"""API tokens: stored hashed, expiring, revocable; DRF's old tokens migrated."""

import importlib
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from execution.policy.token_models import ApiToken
from execution.policy.tokens import create_token, parse_duration, token_digest

migration = importlib.import_module("execution.migrations.0013_api_tokens")


def get_plugins(key: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/v1/plugins")


def assert_refused(response: Any, message: str) -> None:
    assert response.status_code == 401
    error = response.json()["detail"]
    assert error["type"] == "AuthenticationFailed"
    assert error["message"] == message


def test_a_new_token_authenticates_and_only_its_digest_is_stored(user):
    new = create_token(user=user)
    assert get_plugins(new.key).status_code == 200
    row = ApiToken.objects.values().get()
    assert row["digest"] == token_digest(new.key)
    assert new.key not in str(row)
    assert row["prefix"] == new.key[:8]


def test_a_wrong_token_is_refused(user):
    create_token(user=user)
    assert_refused(get_plugins("f" * 40), "Invalid token.")


def test_an_expired_token_gets_a_401_envelope(user):
    new = create_token(user=user, expires_in=timedelta(hours=1))
    assert get_plugins(new.key).status_code == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(get_plugins(new.key), "Token expired.")


def test_revoke_tokens_refuses_every_token_of_the_user_and_no_other(user, staff_user, capsys):
    first, second = create_token(user=user), create_token(user=user)
    other = create_token(user=staff_user)
    call_command("revoke_tokens", user.username)
    assert "Revoked 2 token(s)" in capsys.readouterr().out
    assert_refused(get_plugins(first.key), "Token revoked.")
    assert_refused(get_plugins(second.key), "Token revoked.")
    assert get_plugins(other.key).status_code == 200


def test_create_token_prints_a_working_token_with_its_expiry(user, capsys):
    call_command("create_token", user.username, expiry="30d")
    out = capsys.readouterr()
    key = out.out.strip()
    assert get_plugins(key).status_code == 200
    token = ApiToken.objects.get(digest=token_digest(key))
    assert token.expires_at is not None
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert token.prefix in out.err


def test_create_token_refuses_an_unknown_user_and_a_bad_expiry(user):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("create_token", "nobody")
    with pytest.raises(CommandError, match="not a duration"):
        call_command("create_token", user.username, expiry="soon")
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "30", "d", "-1d", "1y"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_drf_tokens_working_under_the_same_value_and_drops_them(user):
    key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's form: 40 hex characters
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp"
            " with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [key, timezone.now() - timedelta(days=3), user.pk],
        )
    with connection.schema_editor() as schema_editor:
        migration.hash_plain_tokens(apps, schema_editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get()
    assert token.digest == token_digest(key)
    assert token.created_at < timezone.now() - timedelta(days=2)  # its age is kept
    assert get_plugins(key).status_code == 200


def test_failed_authentications_stay_throttled(db, user, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "failed_authentication": "2/min",
        },
    }
    good = create_token(user=user)
    revoked = create_token(user=user, expires_in=timedelta(days=1))
    ApiToken.objects.filter(pk=revoked.token.pk).update(revoked_at=timezone.now())
    statuses = [get_plugins(revoked.key).status_code for _ in range(4)]
    assert statuses[-1] == 429  # a revoked token counts as a failure
    assert get_plugins(good.key).status_code == 429  # and then even a right one is refused
