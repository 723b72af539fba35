"""The admin login locks out after repeated failures (django-axes), then lets in again."""

import pytest
from axes.models import AccessAttempt  # type: ignore[import-untyped]  # no py.typed
from django.test import Client

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = None  # set per test where the cool-off matters


def log_in(client: Client, password: str, username: str = "root"):
    return client.post(LOGIN, {"username": username, "password": password})


def assert_logged_in(response) -> None:
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    page = response.content.decode()
    assert "Login locked" in page
    assert "Too many failed logins for <strong>root</strong>" in page


def test_the_right_password_logs_in(staff_user, lockout):
    assert_logged_in(log_in(Client(), "pw-root-123"))


def test_after_the_limit_of_wrong_passwords_the_right_one_is_refused(staff_user, lockout):
    client = Client()
    assert [log_in(client, "wrong").status_code for _ in range(2)] == [200, 200]  # the form
    assert_locked_out(log_in(client, "wrong"))  # the third failure locks
    assert_locked_out(log_in(client, "pw-root-123"))
    assert "_auth_user_id" not in client.session


def test_after_the_cool_off_the_right_password_works(staff_user, lockout, settings):
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(seconds=30)
    client = Client()
    for _ in range(3):
        log_in(client, "wrong")
    assert_locked_out(log_in(client, "pw-root-123"))
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(seconds=31)
    )
    assert_logged_in(log_in(client, "pw-root-123"))
    assert not AccessAttempt.objects.exists()  # a success clears the failures


def test_the_lockout_is_per_address_behind_the_proxy(staff_user, lockout, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    attacker = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    for _ in range(3):
        log_in(attacker, "wrong")
    assert_locked_out(log_in(attacker, "pw-root-123"))
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"
    # Another client behind the same proxy is not locked out by the attacker.
    admin = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert_logged_in(log_in(admin, "pw-root-123"))
