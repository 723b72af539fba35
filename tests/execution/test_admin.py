import pytest
from django.utils import timezone

from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from execution.task_engine import get_task_engine

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/execution/job/"


@pytest.fixture
def jobs(user):
    service = JobExecutionService()
    ok = service.execute_now(plugin_name="echo", payload={"message": "fine"}, requested_by=user)
    failed = service.execute_now(
        plugin_name="raising", payload={"message": "boom"}, requested_by=user
    )
    pending = service.create_job(
        plugin_name="echo", payload={"message": "later"}, requested_by=user
    )
    return ok, failed, pending


def test_the_job_list_shows_id_plugin_status_requester_and_duration(admin_client, jobs):
    ok, _failed, _pending = jobs
    page = admin_client.get(CHANGELIST).content.decode()
    for job in jobs:
        assert job.short_id in page
    assert "job-status-success" in page
    assert "job-status-failed" in page
    assert "job-status-pending" in page
    assert "alice" in page
    assert f"{ok.elapsed_ms:.1f} ms" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [("status__exact=FAILED", {"failed"}), ("plugin_name=echo", {"ok", "pending"})],
)
def test_the_job_list_filters(admin_client, jobs, query, expected):
    named = dict(zip(("ok", "failed", "pending"), jobs, strict=True))
    page = admin_client.get(f"{CHANGELIST}?{query}").content.decode()
    shown = {name for name, job in named.items() if job.short_id in page}
    assert shown == expected


@pytest.mark.parametrize(
    ("term", "expected"),
    [("raising", {"failed"}), ("PluginExecutionError", {"failed"})],
)
def test_the_job_list_searches_plugin_and_error_type(admin_client, jobs, term, expected):
    named = dict(zip(("ok", "failed", "pending"), jobs, strict=True))
    page = admin_client.get(f"{CHANGELIST}?q={term}").content.decode()
    assert {name for name, job in named.items() if job.short_id in page} == expected


def test_the_job_list_searches_by_id(admin_client, jobs):
    ok, failed, _ = jobs
    for term in (ok.short_id, str(ok.pk)):
        page = admin_client.get(f"{CHANGELIST}?q={term}").content.decode()
        assert ok.short_id in page
        assert failed.short_id not in page


def test_the_detail_page_is_read_only_with_pretty_json_and_the_traceback(admin_client, jobs):
    _, failed, _ = jobs
    response = admin_client.get(f"{CHANGELIST}{failed.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "PluginExecutionError" in page
    assert "job-traceback" in page
    assert "secret connection string" in page  # the traceback, for staff only
    assert "&quot;message&quot;: &quot;boom&quot;" in page  # input, indented JSON
    assert 'name="status"' not in page
    assert "Save" not in page
    assert "/delete/" not in page  # jobs are the audit trail


def test_jobs_cannot_be_added_or_edited(admin_client, jobs):
    ok, _, _ = jobs
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    response = admin_client.post(f"{CHANGELIST}{ok.pk}/change/", {"status": "FAILED"})
    assert response.status_code == 403
    ok.refresh_from_db()
    assert ok.status == JobStatus.SUCCESS


def test_run_again_creates_new_jobs_through_the_services(
    admin_client, admin_user, jobs, django_capture_on_commit_callbacks
):
    ok, failed, _ = jobs
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST,
            {"action": "run_again", "_selected_action": [str(ok.pk), str(failed.pk)]},
            follow=True,
        )
    assert "2 job(s) submitted again." in response.content.decode()
    new_jobs = Job.objects.filter(requested_by=admin_user)
    assert new_jobs.count() == 2
    assert {job.plugin_name for job in new_jobs} == {"echo", "raising"}
    assert {job.status for job in new_jobs} == {JobStatus.PENDING}
    assert all(job.task_id for job in new_jobs)
    assert not get_task_engine().with_lost_tasks(new_jobs, stale_before=timezone.now()).exists()
    ok.refresh_from_db()
    assert ok.status == JobStatus.SUCCESS  # the originals are untouched


def test_run_again_reports_jobs_that_can_no_longer_run(admin_client, jobs):
    ok, _, _ = jobs
    Job.objects.filter(pk=ok.pk).update(plugin_name="gone")
    response = admin_client.post(
        CHANGELIST, {"action": "run_again", "_selected_action": [str(ok.pk)]}, follow=True
    )
    assert "No plugin named &#x27;gone&#x27;" in response.content.decode()
    assert Job.objects.count() == 3


def test_the_overview_charts_executions_error_rate_and_duration(admin_client, jobs):
    response = admin_client.get(f"{CHANGELIST}overview/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-plugin="echo"' in page
    assert 'data-plugin="raising"' in page
    assert '<td class="error-rate">100.0%</td>' in page  # raising: 1 of 1 failed
    assert '<td class="error-rate">0.0%</td>' in page  # echo: 0 of 2
    assert "bar-executions" in page
    assert "http" not in page.split("<style>")[1].split("</style>")[0]  # no CDN assets
    assert f"{CHANGELIST}overview/" in admin_client.get(CHANGELIST).content.decode()


def test_the_job_admin_is_for_staff_only(client, user, jobs):
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 302
    assert client.get(f"{CHANGELIST}overview/").status_code == 302


def test_cancel_selected_jobs_cancels_what_can_be_and_reports_the_rest(admin_client, jobs):
    ok, _failed, pending = jobs
    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_jobs", "_selected_action": [str(ok.pk), str(pending.pk)]},
        follow=True,
    )
    page = response.content.decode()
    assert "1 job(s) cancelled." in page
    assert f"Already ended, not cancelled: {ok.short_id}" in page
    pending.refresh_from_db()
    assert pending.status == JobStatus.CANCELLED
    assert pending.public_error["details"]["cancelled_by"] == "admin"
    ok.refresh_from_db()
    assert ok.status == JobStatus.SUCCESS
    assert "job-status-cancelled" in admin_client.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [("PluginExecutionError", {"failed"}), ("PluginCrashed", set()), ("Cancelled", {"pending"})],
)
def test_the_job_list_filters_by_error_type_from_the_closed_set(
    admin_client, jobs, error_type, expected
):
    named = dict(zip(("ok", "failed", "pending"), jobs, strict=True))
    JobExecutionService().cancel_job(job=named["pending"])
    page = admin_client.get(f"{CHANGELIST}?error_type={error_type}").content.decode()
    assert {name for name, job in named.items() if job.short_id in page} == expected
    listing = admin_client.get(CHANGELIST).content.decode()
    for kind in ("PluginCrashed", "PluginResourceLimit", "WorkerLost", "Cancelled"):
        assert f"?error_type={kind}" in listing
