"""The job admin for incidents: error type, requester and attempt filters, re-run links, windows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model

from execution.models import Job
from execution.services import JobExecutionService

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/execution/job/"
OVERVIEW = f"{CHANGELIST}overview/"


@pytest.fixture
def jobs(user):
    service = JobExecutionService()
    other = get_user_model().objects.create_user("bob", password="pw-bob-123456")
    ok = service.execute_now(plugin_name="echo", payload={"message": "fine"}, requested_by=user)
    failed = service.execute_now(
        plugin_name="raising", payload={"message": "boom"}, requested_by=other
    )
    return ok, failed, other


def listed(admin_client, query: str) -> set[str]:
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return {job.short_id for job in response.context["cl"].result_list}


def test_the_list_shows_the_error_type_and_attempt(admin_client, jobs):
    page = admin_client.get(CHANGELIST).content.decode()
    assert "column-error_type_display" in page
    assert "column-attempt" in page
    _, failed, _ = jobs
    assert failed.error_type
    assert failed.error_type in page
    by_error_type = admin_client.get(f"{CHANGELIST}?o=-4")  # sorted by the error-type column
    order = [job.short_id for job in by_error_type.context["cl"].result_list]
    assert failed.short_id in (order[0], order[-1])  # where NULLs go depends on the database


def test_filters_by_requester_and_attempt(admin_client, jobs, user):
    ok, failed, other = jobs
    assert listed(admin_client, f"requested_by__id__exact={user.pk}") == {ok.short_id}
    assert listed(admin_client, f"requested_by__id__exact={other.pk}") == {failed.short_id}
    Job.objects.filter(pk=failed.pk).update(attempt=2)
    assert listed(admin_client, "attempt=2") == {failed.short_id}
    assert listed(admin_client, "attempt=1") == {ok.short_id}


def test_a_rerun_links_both_ways_and_writes_an_admin_log_entry(
    admin_client, admin_user, jobs, django_capture_on_commit_callbacks
):
    ok, _, _ = jobs
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            CHANGELIST, {"action": "run_again", "_selected_action": [str(ok.pk)]}, follow=True
        )
    again = Job.objects.get(requested_by=admin_user)
    assert again.rerun_of_id == ok.pk
    entry = LogEntry.objects.get(user=admin_user, object_id=str(again.pk))
    assert entry.action_flag == ADDITION
    assert str(ok.pk) in entry.get_change_message()
    original = admin_client.get(f"{CHANGELIST}{ok.pk}/change/").content.decode()
    assert f"{CHANGELIST}{again.pk}/change/" in original
    repeat = admin_client.get(f"{CHANGELIST}{again.pk}/change/").content.decode()
    assert f"{CHANGELIST}{ok.pk}/change/" in repeat


def test_the_overview_takes_a_window(admin_client, jobs):
    ok, _, _ = jobs
    Job.objects.filter(pk=ok.pk).update(created_at=ok.created_at - timedelta(days=3))
    day = admin_client.get(f"{OVERVIEW}?window=day").content.decode()
    assert 'data-plugin="raising"' in day
    assert 'data-plugin="echo"' not in day
    week = admin_client.get(f"{OVERVIEW}?window=week").content.decode()
    assert 'data-plugin="echo"' in week
    everything = admin_client.get(f"{OVERVIEW}?window=nonsense").content.decode()
    assert 'data-plugin="echo"' in everything
    assert 'data-window="all"' in everything
    hour = admin_client.get(f"{OVERVIEW}?window=hour").content.decode()
    assert 'data-plugin="echo"' not in hour


def test_the_overview_charts_each_hour_with_its_failures(admin_client, jobs):
    ok, failed, _ = jobs
    Job.objects.filter(pk=ok.pk).update(created_at=failed.created_at - timedelta(hours=2))
    response = admin_client.get(f"{OVERVIEW}?window=day")
    hours = response.context["hours"]
    assert [(h["executions"], h["failed"]) for h in hours] == [(1, 0), (0, 0), (1, 1)]
    page = response.content.decode()
    assert page.count('class="hour"') == 3
    assert 'data-executions="1" data-failed="1"' in page


def test_both_metrics_pages_say_what_they_count(admin_client, jobs):
    overview = admin_client.get(OVERVIEW).content.decode()
    assert 'class="help overview-counts"' in overview
    assert "FAILED" in overview
    metrics = admin_client.get("/admin/plugins/pluginmetrics/").content.decode()
    assert 'class="help metrics-counts"' in metrics
    assert "since the audit began" in metrics
