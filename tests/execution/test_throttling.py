"""The API's rate limits: per-user burst and sustained rates, failed authentications per address.

Time is the throttles' ``timer``, moved by the tests (no sleeping); the state is
the real database's. The same limits against real gunicorn workers, at once:
tests/faults/test_throttling_server.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.policy.throttle_models import ThrottleBucket
from execution.policy.throttling import (
    SWEEP_INTERVAL_S,
    GCRAThrottle,
    Rate,
    check_rates,
    client_address,
    delete_stale_buckets,
    sweeper,
)
from execution.policy.token_models import ApiToken
from execution.policy.tokens import create_token
from plugins.metrics.instruments import UNKNOWN_PLUGIN_LABEL
from tests.statements import statements

JOB = {"plugin": "echo", "payload": {"message": "hi"}}
START_US = 1_800_000_000 * 1_000_000


@dataclass
class Clock:
    now_us: int = START_US

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1_000_000)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(GCRAThrottle, "timer", staticmethod(lambda: clock.now_us))
    return clock


@pytest.fixture
def rates(settings):
    """Sets the throttle rates (any not named: off)."""

    def set_rates(**rates: str | None) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {
                "burst": rates.get("burst"),
                "sustained": rates.get("sustained"),
                "failed_authentication": rates.get("failed_authentication"),
            },
        }

    return set_rates


def client_of(user: Any, address: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_token(user=user).key}")
    return client


def submit(client: APIClient) -> Any:
    return client.post("/v1/jobs", JOB, format="json")


def throttled_count(reason: str) -> float:
    labels = {"decision": "throttled", "reason": reason, "plugin": UNKNOWN_PLUGIN_LABEL}
    return REGISTRY.get_sample_value("governed_policy_decisions_total", labels) or 0.0


def assert_throttled(response: Any, *, limit: str, rate: str, retry_after: int, scope: str) -> None:
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == str(retry_after)
    error = response.json()["detail"]
    assert error["type"] == "Throttled"
    assert error["details"] == {
        "scope": scope,
        "limit": limit,
        "rate": rate,
        "retry_after_s": retry_after,
    }
    assert rate in error["message"]


# Per-user rates ----------------------------------------------------------------------


def test_the_burst_rate_trips_exactly_at_its_rate(db, user, clock, rates):
    rates(burst="3/min")
    client = client_of(user)
    assert [submit(client).status_code for _ in range(3)] == [202, 202, 202]
    assert_throttled(submit(client), limit="burst", rate="3/min", retry_after=20, scope="execution")
    clock.advance(19.5)  # one request every 20 s after the burst
    assert_throttled(submit(client), limit="burst", rate="3/min", retry_after=1, scope="execution")
    clock.advance(0.5)
    assert submit(client).status_code == 202
    assert submit(client).status_code == 429
    clock.advance(60)  # a whole period later the whole burst is back
    assert [submit(client).status_code for _ in range(4)] == [202, 202, 202, 429]


def test_the_sustained_rate_trips_exactly_at_its_rate(db, user, clock, rates):
    rates(sustained="5/hour")
    client = client_of(user)
    assert [submit(client).status_code for _ in range(5)] == [202] * 5
    assert_throttled(
        submit(client), limit="sustained", rate="5/hour", retry_after=720, scope="execution"
    )
    clock.advance(719)
    assert submit(client).status_code == 429
    clock.advance(1)
    assert submit(client).status_code == 202


def test_both_rates_together_and_a_refusal_spends_neither(db, user, clock, rates):
    rates(burst="3/min", sustained="5/hour")
    client = client_of(user)
    assert [submit(client).status_code for _ in range(4)] == [202, 202, 202, 429]
    clock.advance(20)
    assert submit(client).status_code == 202  # the 4th
    clock.advance(20)
    assert submit(client).status_code == 202  # the 5th: the hour's allowance is spent
    clock.advance(20)
    # The burst rate would allow it; the sustained one does not (5 * 720 s - 60 s - 4 * 720 s).
    assert_throttled(
        submit(client), limit="sustained", rate="5/hour", retry_after=660, scope="execution"
    )
    for _ in range(10):  # refused ones move nothing
        assert submit(client).status_code == 429
    clock.advance(660)
    assert submit(client).status_code == 202
    assert ApiToken.objects.count() == 1  # one client throughout


def test_another_user_is_not_affected(db, user, other, clock, rates):
    rates(burst="2/min")
    alice, bob = client_of(user), client_of(other)
    assert [submit(alice).status_code for _ in range(3)] == [202, 202, 429]
    assert [submit(bob).status_code for _ in range(3)] == [202, 202, 429]
    assert ThrottleBucket.objects.filter(scope="execution").count() == 2


def test_running_and_submitting_share_the_rates_and_cancelling_has_its_own(db, user, clock, rates):
    rates(burst="2/min")
    client = client_of(user)
    job_id = submit(client).json()["id"]
    # An unknown plugin is refused after the check: the request still counted.
    response = client.post("/v1/analyze-execution", {"plugin": "nope", "payload": {}}, "json")
    assert response.status_code == 400
    assert client.post("/v1/analyze-execution", JOB, format="json").status_code == 429
    assert submit(client).status_code == 429
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert_throttled(response, limit="burst", rate="2/min", retry_after=30, scope="cancel")
    # Reading is never throttled.
    assert client.get("/v1/jobs").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_rates_off_check_nothing(db, user, clock, rates):
    rates()
    client = client_of(user)
    assert {submit(client).status_code for _ in range(30)} == {202}
    assert not ThrottleBucket.objects.exists()


def test_one_rate_off_leaves_the_other(db, user, clock, rates):
    rates(burst="off", sustained="2/day")
    client = client_of(user)
    assert [submit(client).status_code for _ in range(3)] == [202, 202, 429]


# On the record -----------------------------------------------------------------------


def test_every_refusal_is_counted_and_one_per_interval_audited(db, user, clock, rates, settings):
    settings.API_THROTTLE_AUDIT_INTERVAL_S = 60
    rates(burst="1/hour")
    client = client_of(user)
    before = throttled_count("burst")
    assert submit(client).status_code == 202
    assert [submit(client).status_code for _ in range(10)] == [429] * 10
    assert throttled_count("burst") == before + 10
    entries = AuditEntry.objects.filter(event=AuditEvent.POLICY_THROTTLED)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor == user.get_username()
    assert entry.error_type == "Throttled"
    assert entry.details["reason"] == "burst"
    assert entry.details["scope"] == "execution"
    assert entry.details["refused_in_a_row"] == 1
    clock.advance(59)
    assert submit(client).status_code == 429
    assert entries.count() == 1
    clock.advance(1)
    assert submit(client).status_code == 429
    assert entries.count() == 2
    assert entries.order_by("-pk").first().details["refused_in_a_row"] == 12
    assert throttled_count("burst") == before + 12


def test_a_refusal_logs_the_request_id(db, user, clock, rates, caplog):
    rates(burst="1/hour")
    client = client_of(user)
    submit(client)
    with caplog.at_level("WARNING", logger="execution.policy"):
        response = client.post("/v1/jobs", JOB, format="json", HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 429
    assert response["X-Request-ID"] == "req-42"
    assert any("throttled (burst)" in line and "req-42" in line for line in caplog.messages)


# Failed authentication per address ---------------------------------------------------


def bad_client(address: str = "127.0.0.1", token: str = "0" * 40, **headers: str) -> APIClient:
    client = APIClient()
    client.defaults.update(REMOTE_ADDR=address, **headers)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_failed_authentications_are_throttled_per_address(db, user, clock, rates):
    rates(failed_authentication="3/min")
    attacker = bad_client("10.0.0.1")
    statuses = [attacker.get("/v1/jobs").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    response = attacker.post("/v1/jobs", JOB, format="json")
    assert_throttled(
        response,
        limit="failed_authentication",
        rate="3/min",
        retry_after=20,
        scope="failed_authentication",
    )
    # From that address even the right token is refused, so answers tell a guesser nothing.
    assert client_of(user, "10.0.0.1").get("/v1/jobs").status_code == 429
    # From another address it works, and a malformed header counts as a failure too.
    assert client_of(user, "10.0.0.2").get("/v1/jobs").status_code == 200
    malformed = APIClient(REMOTE_ADDR="10.0.0.3", HTTP_AUTHORIZATION="Token two words")
    assert [malformed.get("/v1/jobs").status_code for _ in range(4)] == [401, 401, 401, 429]
    clock.advance(20)
    assert client_of(user, "10.0.0.1").get("/v1/jobs").status_code == 200
    assert attacker.get("/v1/jobs").status_code == 401
    assert attacker.get("/v1/jobs").status_code == 429


def test_failed_authentications_go_on_the_record_once_per_interval(db, clock, rates):
    rates(failed_authentication="1/min")
    before = throttled_count("failed_authentication")
    attacker = bad_client("10.0.0.9")
    assert [attacker.get("/v1/plugins").status_code for _ in range(6)] == [401] + [429] * 5
    assert throttled_count("failed_authentication") == before + 5
    entry = AuditEntry.objects.get(event=AuditEvent.POLICY_THROTTLED)
    assert entry.actor == "anonymous"
    assert entry.details["client"] == "10.0.0.9"
    assert entry.details["reason"] == "failed_authentication"


def test_forwarded_for_is_trusted_only_behind_configured_proxies(db, clock, rates, settings):
    rates(failed_authentication="1/min")
    # No proxy configured: the header is the client's to write, so it changes nothing.
    spoofing = [bad_client(HTTP_X_FORWARDED_FOR=f"192.0.2.{n}") for n in range(3)]
    assert [client.get("/v1/jobs").status_code for client in spoofing] == [401, 429, 429]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxied = [bad_client("10.1.1.1", HTTP_X_FORWARDED_FOR=f"evil, 198.51.100.{n}") for n in (1, 2)]
    assert [client.get("/v1/jobs").status_code for client in proxied] == [401, 401]
    assert proxied[0].get("/v1/jobs").status_code == 429


def test_an_ipv6_client_is_keyed_by_its_network(db, clock, rates):
    rates(failed_authentication="1/min")
    assert bad_client("2001:db8:1:2::1").get("/v1/jobs").status_code == 401
    assert bad_client("2001:db8:1:2:ffff::9").get("/v1/jobs").status_code == 429
    assert bad_client("2001:db8:1:3::1").get("/v1/jobs").status_code == 401
    assert set(ThrottleBucket.objects.values_list("ident", flat=True)) == {
        "2001:db8:1:2::/64",
        "2001:db8:1:3::/64",
    }


def test_client_address_of_a_mapped_ipv4_is_the_ipv4(rf):
    request = type("R", (), {"headers": {}, "META": {"REMOTE_ADDR": "::ffff:192.0.2.7"}})()
    assert client_address(request) == "192.0.2.7"


def test_failed_authentication_off_counts_nothing(db, user, clock, rates):
    rates()
    attacker = bad_client()
    assert {attacker.get("/v1/jobs").status_code for _ in range(40)} == {401}
    assert client_of(user).get("/v1/jobs").status_code == 200
    assert not ThrottleBucket.objects.exists()


# The bucket and its rows -------------------------------------------------------------


def test_a_known_clients_allowed_request_pays_one_statement_for_both_rates(db, user, clock, rates):
    rates(burst="5/min", sustained="100/day", failed_authentication="5/min")
    client = client_of(user)
    submit(client)
    with statements() as with_throttles:
        assert submit(client).status_code == 202
    rates()
    with statements() as without:
        assert submit(client).status_code == 202
    added = len(with_throttles) - len(without)
    assert added == 1, (with_throttles, without)
    writes = [sql for sql in with_throttles if sql.startswith(("UPDATE", "INSERT"))]
    checks = [sql for sql in writes if "execution_throttlebucket" in sql]
    assert len(checks) == 1
    assert checks[0].startswith("UPDATE execution_throttlebucket")  # a new client's: an upsert


def test_stale_rows_are_deleted_once_every_rate_is_whole_again(db):
    rates = {"burst": Rate.parse("2/min"), "sustained": Rate.parse("10/hour")}
    check_rates("execution", "busy", rates, now_us=START_US)
    check_rates("execution", "idle", rates, now_us=START_US - 3600 * 1_000_000)
    check_rates("failed_authentication", "10.0.0.1", {"burst": Rate.parse("1/s")}, now_us=START_US)
    assert delete_stale_buckets(START_US) == 1  # idle: an hour ago, its sustained TAT is past
    assert set(ThrottleBucket.objects.values_list("ident", flat=True)) == {"busy", "10.0.0.1"}
    assert delete_stale_buckets(START_US + 360 * 1_000_000) == 2
    assert not ThrottleBucket.objects.exists()


def test_each_process_sweeps_stale_rows_as_it_checks(transactional_db, user, clock, rates):
    rates(burst="2/min")
    an_hour_ago = START_US - 3600 * 1_000_000
    check_rates("execution", "idle", {"burst": Rate.parse("2/min")}, now_us=an_hour_ago)
    assert submit(client_of(user)).status_code == 202
    assert ThrottleBucket.objects.count() == 2  # not yet: a sweep at most every 5 minutes
    sweeper._next_at = 0.0
    assert submit(client_of(user)).status_code == 202
    assert list(ThrottleBucket.objects.values_list("ident", flat=True)) == [str(user.pk)]
    assert sweeper._next_at > time.monotonic() + SWEEP_INTERVAL_S - 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60/min", Rate("60/min", 60, 60)),
        (" 2000 / day ", Rate("2000 / day", 2000, 86400)),
        ("5/s", Rate("5/s", 5, 1)),
        ("1/hour", Rate("1/hour", 1, 3600)),
        ("off", None),
        ("", None),
        (None, None),
    ],
)
def test_rates_parse(text, expected):
    assert Rate.parse(text) == expected


def test_a_rate_past_a_million_a_second_is_a_million_a_second():
    rate = Rate.parse("100000000/min")
    assert rate is not None
    assert (rate.interval_us, rate.tolerance_us) == (1, 100_000_000 - 1)


@pytest.mark.parametrize("text", ["0/min", "ten/min", "5/fortnight", "5", "-1/s"])
def test_a_bad_rate_is_a_configuration_error(text, monkeypatch):
    from project.settings import env_rate

    with pytest.raises(ImproperlyConfigured):
        Rate.parse(text)
    monkeypatch.setenv("API_THROTTLE_BURST", text)
    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_BURST"):
        env_rate("API_THROTTLE_BURST", "60/min")


def test_the_settings_come_from_the_environment(monkeypatch):
    from project.settings import env_rate

    monkeypatch.setenv("API_THROTTLE_SUSTAINED", "off")
    assert env_rate("API_THROTTLE_SUSTAINED", "2000/day") is None
    monkeypatch.setenv("API_THROTTLE_SUSTAINED", "")
    assert env_rate("API_THROTTLE_SUSTAINED", "2000/day") is None
    monkeypatch.delenv("API_THROTTLE_SUSTAINED")
    assert env_rate("API_THROTTLE_SUSTAINED", "2000/day") == "2000/day"


def test_the_schema_documents_429_with_retry_after(db, api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/v1/analyze-execution", "/v1/jobs", "/v1/jobs/{id}/cancel"):
        response = schema["paths"][path]["post"]["responses"]["429"]
        assert "burst or sustained" in response["description"]
        assert response["headers"]["Retry-After"]["required"] is True
    throttled = schema["components"]["schemas"]["ThrottledError"]["properties"]["details"]
    assert set(throttled["properties"]) == {"scope", "limit", "rate", "retry_after_s"}


def test_on_postgresql_the_rows_skip_the_wal(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's UNLOGGED tables")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relpersistence FROM pg_class WHERE relname = %s",
            [ThrottleBucket._meta.db_table],
        )
        assert cursor.fetchone() == ("u",)
