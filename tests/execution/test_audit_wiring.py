"""The services put every governed event on the audit trail, once, and the result verifies."""

from __future__ import annotations

import pytest

from execution.audit.chain import seal
from execution.audit.digest import payload_sha256
from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.models import Job
from execution.services import AnalysisExecutionService, JobExecutionService

pytestmark = pytest.mark.django_db(transaction=True)


def events(job_id) -> list[str]:
    return list(
        AuditEntry.objects.filter(job_id=job_id).order_by("id").values_list("event", flat=True)
    )


def verified() -> None:
    seal()
    report = verify()
    assert report.ok, report.first_problem


def test_a_synchronous_run_is_submitted_started_and_finished_with_its_count(api_client, user):
    body = {"plugin": "echo", "payload": {"message": "hi"}}
    response = api_client.post("/v1/analyze-execution", body, format="json")
    assert response.status_code == 200
    job_id = response.json()["job_id"]
    assert events(job_id) == [
        AuditEvent.JOB_SUBMITTED,
        AuditEvent.JOB_STARTED,
        AuditEvent.JOB_FINISHED,
    ]
    submitted = AuditEntry.objects.get(job_id=job_id, event=AuditEvent.JOB_SUBMITTED)
    assert (submitted.actor, submitted.actor_id) == (user.username, user.pk)
    assert submitted.input_sha256 == payload_sha256({"message": "hi"})
    finished = AuditEntry.objects.get(job_id=job_id, event=AuditEvent.JOB_FINISHED)
    job = Job.objects.get(pk=job_id)
    assert finished.details == {"status": "SUCCESS", "metrics": "success", "run": job.lease_holder}
    assert finished.result_sha256 == payload_sha256({"echoed": "hi"})
    assert finished.plugin_fingerprint.startswith(("sha256:", "governed"))
    verified()


def test_a_refused_input_is_one_refusal_naming_the_job_it_removed(api_client, user):
    body = {"plugin": "echo", "payload": {"message": 3}}
    response = api_client.post("/v1/analyze-execution", body, format="json")
    assert response.status_code == 400
    # The plugin's process refused it: its provisional job had been recorded, then removed.
    (refusal,) = AuditEntry.objects.filter(event=AuditEvent.REQUEST_REFUSED)
    assert (refusal.error_type, refusal.actor_id) == ("ValidationError", user.pk)
    assert events(refusal.job_id) == [
        AuditEvent.JOB_SUBMITTED,
        AuditEvent.JOB_STARTED,
        AuditEvent.REQUEST_REFUSED,
    ]
    assert not Job.objects.exists()
    verified()


def test_a_refused_body_is_on_the_trail_too(api_client, user):
    response = api_client.post("/v1/jobs", {"plugin": "nope", "payload": {}}, format="json")
    assert response.status_code == 400
    (refusal,) = AuditEntry.objects.all()
    assert (refusal.event, refusal.error_type, refusal.plugin_name) == (
        AuditEvent.REQUEST_REFUSED,
        "PluginNotFound",
        "nope",
    )


def test_background_cancel_and_rerun(user, staff_user):
    service = AnalysisExecutionService()
    job = service.submit(plugin_name="echo", payload={"message": "x"}, user=user)
    again = service.rerun(job=job, user=staff_user)
    service.cancel(job_id=job.pk, user=staff_user)
    assert events(job.pk) == [
        AuditEvent.JOB_SUBMITTED,
        AuditEvent.JOB_RERUN,
        AuditEvent.JOB_CANCELLED,
    ]
    rerun = AuditEntry.objects.get(job_id=job.pk, event=AuditEvent.JOB_RERUN)
    assert (rerun.actor_id, rerun.details) == (staff_user.pk, {"rerun_as": str(again.pk)})
    cancelled = AuditEntry.objects.get(job_id=job.pk, event=AuditEvent.JOB_CANCELLED)
    assert cancelled.actor_id == staff_user.pk
    JobExecutionService().run_job(job_id=again.pk)
    assert events(again.pk) == [
        AuditEvent.JOB_SUBMITTED,
        AuditEvent.JOB_STARTED,
        AuditEvent.JOB_FINISHED,
    ]
    verified()
