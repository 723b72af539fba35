"""Quotas: each one's 429 and details, per-grant overrides, the day's budgets, the cap's release."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.clock import database_now
from execution.models import Job, JobStatus
from execution.policy.enforcement import (
    Limits,
    QuotaExceededError,
    check_access,
    stored_size,
)
from execution.policy.models import PluginGrant, PolicyUsage
from execution.services import AnalysisExecutionService
from execution.services.job_execution_service import JobExecutionService
from tests.plugins.sample_plugins import SlowPlugin

pytestmark = pytest.mark.django_db

ECHO = {"plugin": "echo", "payload": {"message": "hi"}}


@pytest.fixture(autouse=True)
def _quotas(settings):
    settings.PLUGIN_ACCESS = "open"
    settings.POLICY_MAX_ACTIVE_JOBS = 1000
    settings.POLICY_MAX_SYNC_RUNS = 4
    settings.POLICY_DAILY_STORED_BYTES = 10**9
    settings.POLICY_DAILY_EXECUTION_S = 3600


def assert_over(response, quota: str, limit: int) -> dict:
    assert response.status_code == 429, response.content
    error = response.json()["detail"]
    assert error["type"] == "QuotaExceeded"
    assert error["details"]["quota"] == quota
    assert error["details"]["limit"] == limit
    assert int(response["Retry-After"]) >= 1
    return error


def test_the_active_jobs_quota_refuses_a_submission_past_it_and_records_only_the_refusal(
    settings, api_client, user
):
    settings.POLICY_MAX_ACTIVE_JOBS = 2
    for _ in range(2):
        assert api_client.post("/v1/jobs", ECHO, format="json").status_code == 202
    entries_before = AuditEntry.objects.count()
    error = assert_over(api_client.post("/v1/jobs", ECHO, format="json"), "max_active_jobs", 2)
    assert error["details"]["used"] == 2
    assert error["details"]["resets_at"] is None
    assert error["plugin"] == "echo"
    assert Job.objects.count() == 2
    new = list(AuditEntry.objects.order_by("id")[entries_before:])
    assert [(e.event, e.error_type) for e in new] == [
        (AuditEvent.POLICY_OVER_QUOTA, "QuotaExceeded")
    ]
    assert new[0].details["quota"] == "max_active_jobs"
    # A job that ends frees its place.
    JobExecutionService().run_job(job_id=Job.objects.first().pk)
    assert api_client.post("/v1/jobs", ECHO, format="json").status_code == 202


def test_the_daily_stored_bytes_budget_counts_inputs_and_results(settings, api_client, user):
    response = api_client.post("/v1/analyze-execution", ECHO, format="json")
    assert response.status_code == 200
    one_run = stored_size(ECHO["payload"]) + stored_size(response.json()["result"])
    usage = PolicyUsage.objects.get(user=user)
    assert usage.stored_bytes == one_run
    assert usage.day == database_now().date()
    limit = one_run + stored_size(ECHO["payload"])  # room for the next input, not its result
    settings.POLICY_DAILY_STORED_BYTES = limit
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    error = assert_over(
        api_client.post("/v1/analyze-execution", ECHO, format="json"),
        "daily_stored_bytes",
        limit,
    )
    assert error["details"]["used"] == 2 * one_run
    resets_at = error["details"]["resets_at"]
    assert resets_at.startswith((database_now().date() + timedelta(days=1)).isoformat())
    assert Job.objects.count() == 2
    # Background submissions are held to the same budget.
    assert_over(api_client.post("/v1/jobs", ECHO, format="json"), "daily_stored_bytes", limit)


def test_an_input_larger_than_the_whole_budget_is_refused_at_once(settings, api_client):
    settings.POLICY_DAILY_STORED_BYTES = 10
    response = api_client.post(
        "/v1/jobs", {"plugin": "echo", "payload": {"message": "x" * 50}}, format="json"
    )
    assert_over(response, "daily_stored_bytes", 10)
    assert not Job.objects.exists()


def test_the_daily_execution_budget_counts_elapsed_ms(settings, api_client, user):
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    elapsed_ms = Job.objects.get().elapsed_ms
    assert PolicyUsage.objects.get(user=user).execution_ms == pytest.approx(elapsed_ms)
    PolicyUsage.objects.filter(user=user).update(execution_ms=3600 * 1000.0)
    for url in ("/v1/analyze-execution", "/v1/jobs"):
        error = assert_over(api_client.post(url, ECHO, format="json"), "daily_execution_s", 3600)
        assert error["details"]["used"] == 3600.0
    assert Job.objects.count() == 1


def test_yesterdays_usage_does_not_count_today(settings, api_client, user):
    settings.POLICY_DAILY_EXECUTION_S = 1
    PolicyUsage.objects.create(
        user=user,
        day=database_now().date() - timedelta(days=1),
        stored_bytes=10**9,
        execution_ms=10**7,
    )
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    usage = PolicyUsage.objects.get(user=user)
    assert usage.day == database_now().date()
    assert usage.stored_bytes < 1000
    assert usage.execution_ms < 1000


SLEEPING = "tests.plugins.sample_plugins.SleepingPlugin"


@pytest.fixture
def sleeping_in_threads(settings):
    """The sleeping plugin, in the test's own threads (its runs overlap for sure)."""
    from tests.execution.conftest import SAMPLE_PLUGINS

    settings.PLUGINS = [*SAMPLE_PLUGINS, SLEEPING]
    settings.PLUGIN_THREAD_ALLOWED = ["sleeping", "slow"]
    settings.PLUGIN_ISOLATION = "thread"


def in_threads(count: int, run) -> list[threading.Thread]:
    from django.db import connection

    def target() -> None:
        try:
            run()
        finally:
            connection.close()

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def wait_for_running(count: int) -> None:
    deadline = database_now() + timedelta(seconds=30)
    while Job.objects.filter(status=JobStatus.RUNNING).count() < count:
        assert database_now() < deadline


def test_the_synchronous_cap_refuses_a_run_past_it_and_is_released_when_runs_end(
    settings, user, transactional_db, sleeping_in_threads
):
    """Two runs in flight in two threads, the third refused; afterwards the cap is free again."""
    settings.POLICY_MAX_SYNC_RUNS = 2
    service = AnalysisExecutionService()
    results: list[Job] = []
    threads = in_threads(
        2,
        lambda: results.append(
            service.execute(
                plugin_name="sleeping", payload={"message": "x", "repeat": 2000}, user=user
            )
        ),
    )
    wait_for_running(2)
    with pytest.raises(QuotaExceededError) as refused:
        service.execute(plugin_name="echo", payload={"message": "x"}, user=user)
    assert refused.value.details["quota"] == "max_sync_runs"
    assert refused.value.details["used"] == 2
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 2  # still in flight
    for thread in threads:
        thread.join(30)
    assert [job.status for job in results] == [JobStatus.SUCCESS] * 2
    assert PolicyUsage.objects.get(user=user).sync_runs == 0
    assert service.execute(plugin_name="echo", payload={"message": "x"}, user=user).status == (
        JobStatus.SUCCESS
    )


def test_a_cancelled_or_timed_out_synchronous_run_releases_its_place(
    settings, user, transactional_db, sleeping_in_threads
):
    settings.POLICY_MAX_SYNC_RUNS = 1
    settings.JOB_CANCEL_POLL_S = 0.05
    service = AnalysisExecutionService()
    results: list[Job] = []
    threads = in_threads(
        1,
        lambda: results.append(
            service.execute(
                plugin_name="sleeping", payload={"message": "x", "repeat": 4000}, user=user
            )
        ),
    )
    wait_for_running(1)
    service.cancel(job_id=Job.objects.get().pk, user=user)
    threads[0].join(30)
    assert results[0].status == JobStatus.CANCELLED
    assert PolicyUsage.objects.get(user=user).sync_runs == 0
    SlowPlugin.release.clear()  # it outlives its 0.2 s time limit
    try:
        timed_out = service.execute(plugin_name="slow", payload={"message": "x"}, user=user)
    finally:
        SlowPlugin.release.set()
    assert timed_out.error_type == "PluginTimeout"
    assert PolicyUsage.objects.get(user=user).sync_runs == 0


@pytest.mark.parametrize(
    "body",
    [
        {"plugin": "echo", "payload": {"message": 3}},  # refused input
        {"plugin": "raising", "payload": {"message": "x"}},  # the plugin fails
    ],
)
def test_every_way_a_synchronous_run_ends_releases_its_place(settings, api_client, user, body):
    settings.POLICY_MAX_SYNC_RUNS = 1
    for _ in range(3):
        assert api_client.post("/v1/analyze-execution", body, format="json").status_code == 400
        assert PolicyUsage.objects.get(user=user).sync_runs == 0


def test_places_a_killed_process_never_released_are_forgotten_once_their_leases_end(
    settings, api_client, user
):
    settings.POLICY_MAX_SYNC_RUNS = 1
    PolicyUsage.objects.create(
        user=user,
        day=database_now().date(),
        sync_runs=1,
        sync_runs_until=database_now() + timedelta(minutes=5),
    )
    assert_over(api_client.post("/v1/analyze-execution", ECHO, format="json"), "max_sync_runs", 1)
    PolicyUsage.objects.filter(user=user).update(
        sync_runs_until=database_now() - timedelta(seconds=1)
    )
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    assert PolicyUsage.objects.get(user=user).sync_runs == 0


def test_a_users_grant_overrides_the_defaults_for_that_plugin_only(settings, api_client, user):
    settings.PLUGIN_ACCESS = "restricted"
    settings.POLICY_MAX_ACTIVE_JOBS = 1
    PluginGrant.objects.create(plugin_name="echo", user=user, max_active_jobs=3)
    PluginGrant.objects.create(plugin_name="noop", user=user)
    for _ in range(3):
        assert api_client.post("/v1/jobs", ECHO, format="json").status_code == 202
    assert_over(api_client.post("/v1/jobs", ECHO, format="json"), "max_active_jobs", 3)
    # The same user's jobs count; another plugin's grant has the default limit.
    noop = {"plugin": "noop", "payload": {}}
    assert_over(api_client.post("/v1/jobs", noop, format="json"), "max_active_jobs", 1)


def test_a_grant_of_0_lifts_a_limit(settings, api_client, user):
    settings.POLICY_DAILY_EXECUTION_S = 1
    PluginGrant.objects.create(plugin_name="echo", user=user, daily_execution_s=0)
    PolicyUsage.objects.create(user=user, day=database_now().date(), execution_ms=10**7)
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200


def test_limits_combine_a_users_own_grant_first_then_the_most_generous_group(settings, user):
    settings.POLICY_MAX_SYNC_RUNS = 4
    settings.POLICY_MAX_ACTIVE_JOBS = 10
    small, large = Group.objects.create(name="small"), Group.objects.create(name="large")
    user.groups.add(small, large)
    PluginGrant.objects.create(plugin_name="echo", group=small, max_sync_runs=1, max_active_jobs=5)
    PluginGrant.objects.create(plugin_name="echo", group=large, max_sync_runs=8)
    limits = check_access(user, "echo").limits
    assert (limits.max_sync_runs, limits.max_active_jobs) == (8, 5)
    PluginGrant.objects.create(plugin_name="echo", user=user, max_sync_runs=2)
    limits = check_access(user, "echo").limits
    assert (limits.max_sync_runs, limits.max_active_jobs) == (2, 5)
    assert check_access(user, "noop").limits == Limits.from_settings()


def test_the_admins_rerun_is_held_to_the_rerunning_users_quotas(settings, admin_user, user):
    job = AnalysisExecutionService().execute(
        plugin_name="echo", payload={"message": "x"}, user=user
    )
    settings.POLICY_MAX_ACTIVE_JOBS = 1
    service = AnalysisExecutionService()
    service.rerun(job=job, user=admin_user)
    with pytest.raises(QuotaExceededError):
        service.rerun(job=job, user=admin_user)
    assert Job.objects.filter(requested_by=admin_user).count() == 1
    reruns = AuditEntry.objects.filter(event=AuditEvent.JOB_RERUN, actor=admin_user.username)
    assert reruns.count() == 1
    assert AuditEntry.objects.filter(
        event=AuditEvent.POLICY_OVER_QUOTA, actor=admin_user.username
    ).exists()


def test_unlimited_quotas_record_no_usage_check_for_synchronous_runs(settings, api_client, user):
    settings.POLICY_MAX_SYNC_RUNS = 0
    settings.POLICY_DAILY_STORED_BYTES = 0
    settings.POLICY_DAILY_EXECUTION_S = 0
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    # The outcome still counts the run's usage, for the admin to see.
    assert PolicyUsage.objects.get(user=user).stored_bytes > 0


def test_the_admin_shows_each_users_usage_today_against_their_quotas(
    settings, admin_client, api_client, user
):
    settings.POLICY_MAX_ACTIVE_JOBS = 7
    assert api_client.post("/v1/analyze-execution", ECHO, format="json").status_code == 200
    assert api_client.post("/v1/jobs", ECHO, format="json").status_code == 202
    page = admin_client.get(reverse("admin:execution_policyusage_changelist")).content.decode()
    assert "alice" in page
    assert "1 / 7" in page  # one job pending, of 7
    assert "0 / 4" in page  # no synchronous run in flight, of 4
    stored = PolicyUsage.objects.get(user=user).stored_bytes
    assert f"{stored} / {10**9}" in page


def test_concurrent_submissions_take_turns_on_the_users_row(
    settings, monkeypatch, user, transactional_db
):
    """The count is slowed down: without the row lock, every thread would count 1 and submit."""
    from django.db import connection

    from execution.policy import enforcement

    settings.POLICY_MAX_ACTIVE_JOBS = 2
    Job.objects.create(plugin_name="echo", requested_by=user)  # PENDING
    count = enforcement._active_jobs

    def slow_count(user_id: object) -> int:
        counted = count(user_id)
        threading.Event().wait(0.3)  # the window a check-then-insert would lose
        return counted

    monkeypatch.setattr(enforcement, "_active_jobs", slow_count)
    barrier = threading.Barrier(5)
    outcomes: list[str] = []

    def submit() -> None:
        barrier.wait()
        try:
            AnalysisExecutionService().submit(
                plugin_name="echo", payload={"message": "x"}, user=user
            )
            outcomes.append("accepted")
        except QuotaExceededError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * 4
    assert Job.objects.filter(requested_by=user).count() == 2
