"""Who sees which jobs, and the reads the API and the admin share."""

import pytest
from django.contrib.auth.models import Permission

from execution.models import Job
from execution.selectors import (
    JobNotFound,
    get_job,
    job_summaries,
    jobs_visible_to,
    plugin_overview,
)
from execution.services import JobExecutionService


@pytest.fixture
def plain_staff(django_user_model):
    """Staff, so the admin lets them in, but without any permission on jobs."""
    return django_user_model.objects.create_user("stella", password="pw-stella-1", is_staff=True)


def test_users_see_their_own_jobs_and_superusers_all(user, staff_user):
    mine = Job.objects.create(plugin_name="echo", requested_by=user)
    theirs = Job.objects.create(plugin_name="echo", requested_by=staff_user)
    assert list(jobs_visible_to(user)) == [mine]
    assert set(jobs_visible_to(staff_user)) == {mine, theirs}


def test_being_staff_is_not_enough_to_see_everyone_s_jobs(user, plain_staff):
    Job.objects.create(plugin_name="echo", requested_by=user)
    own = Job.objects.create(plugin_name="echo", requested_by=plain_staff)
    assert list(jobs_visible_to(plain_staff)) == [own]

    plain_staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    plain_staff = type(plain_staff).objects.get(pk=plain_staff.pk)  # a fresh permission cache
    assert jobs_visible_to(plain_staff).count() == 2


def test_get_job_hides_other_users_jobs(user, staff_user):
    job = Job.objects.create(plugin_name="echo", requested_by=staff_user)
    assert get_job(job.pk, user=staff_user) == job
    assert get_job(job.pk) == job
    with pytest.raises(JobNotFound):
        get_job(job.pk, user=user)
    with pytest.raises(JobNotFound):
        get_job("not-a-uuid")


def test_summaries_leave_input_and_result_unloaded(user):
    Job.objects.create(plugin_name="echo", requested_by=user, input_payload={"big": "x" * 1000})
    summary = job_summaries(user=user).get()
    assert summary.get_deferred_fields() == {"input_payload", "result"}


def test_the_overview_counts_executions_failures_and_shares(user):
    service = JobExecutionService()
    service.execute_now(plugin_name="echo", payload={"message": "x"})
    service.execute_now(plugin_name="raising", payload={"message": "x"})
    service.execute_now(plugin_name="raising", payload={"message": "x"})
    rows = {row["plugin_name"]: row for row in plugin_overview()}
    assert (rows["echo"]["executions"], rows["echo"]["failed"]) == (1, 0)
    assert (rows["raising"]["executions"], rows["raising"]["failed"]) == (2, 2)
    assert rows["raising"]["error_rate"] == 1.0
    assert rows["raising"]["executions_pct"] == 100
    assert rows["echo"]["executions_pct"] == 50
    slowest = max(row["average_ms"] for row in rows.values())
    for row in rows.values():
        assert row["average_pct"] == pytest.approx(100 * row["average_ms"] / slowest)
