"""Retention: ``manage.py prune_jobs`` deletes or slims old final jobs; the audit still verifies."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django_tasks_db.models import DBTaskResult

from execution.audit.chain import seal
from execution.audit.events import AuditEvent
from execution.audit.models import AuditEntry
from execution.audit.verify import verify
from execution.models import Job, JobStatus
from execution.services.retention import InvalidAge, parse_age
from execution.task_engine import get_task_engine
from tests.execution import audit_scenarios as scenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(user):
    other = get_user_model().objects.create_user("bob", password="pw-bob-123456")
    jobs = scenario.a_bit_of_everything(user, other)
    # Everything that ended did so 40 days ago, but "sync", which ended just now.
    old = [jobs[name].pk for name in ("ok", "failed", "cancelled")]
    Job.objects.filter(pk__in=old).update(
        finished_at=Job.objects.get(pk=old[0]).finished_at - timedelta(days=40)
    )
    seal()
    return jobs


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_jobs", *args, stdout=out)
    return out.getvalue()


def verified() -> bool:
    seal()
    return verify().ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))],
)
def test_ages_in_days_hours_and_minutes(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "30", "30x", "-1d", "0d", "1.5d", "d"])
def test_a_bad_age_is_refused_with_a_clear_error(db, text):
    with pytest.raises(InvalidAge):
        parse_age(text)
    with pytest.raises(
        CommandError, match=r"--older-than: .*(e\.g\. 30d, 12h or 90m|more than zero)"
    ):
        prune(f"--older-than={text}")


def test_dry_run_counts_and_changes_nothing(history):
    entries = AuditEntry.objects.count()
    out = prune("--older-than", "30d", "--dry-run")
    assert "would delete 3 job(s)" in out
    assert Job.objects.count() == 5
    assert AuditEntry.objects.count() == entries


def test_deletes_only_old_final_jobs_with_their_tasks_and_the_audit_verifies(history, user):
    ok = history["ok"]
    task_id = get_task_engine().enqueue(ok.pk)
    Job.objects.filter(pk=ok.pk).update(task_id=task_id)
    assert DBTaskResult.objects.filter(pk=task_id).exists()

    out = prune("--older-than", "30d", "--batch-size", "2", "--actor", "ops")
    assert "Deleted 3 job(s) and 1 task record(s)" in out
    assert "2 batch(es)" in out
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {history["sync"].pk, history["pending"].pk}
    assert not DBTaskResult.objects.filter(pk=task_id).exists()
    assert verified()

    summary = AuditEntry.objects.get(event=AuditEvent.JOB_PRUNED, job_id=None)
    assert summary.actor == "ops"
    assert summary.details["jobs"] == 3
    assert summary.details["retention"] == "deleted"
    assert summary.details["older_than_s"] == 30 * 86400
    assert summary.details["cutoff"]
    # The deleted jobs' own entries stay, each with its job.pruned.
    assert AuditEntry.objects.filter(job_id=ok.pk, event=AuditEvent.JOB_SUBMITTED).exists()
    assert AuditEntry.objects.filter(job_id=ok.pk, event=AuditEvent.JOB_PRUNED).count() == 1

    # What remains is still guarded.
    Job.objects.filter(pk=history["sync"].pk).update(result={"echoed": "forged"})
    assert not verified()


def test_keep_audit_drops_input_and_result_but_keeps_the_outcome(history):
    failed = history["failed"]
    out = prune("--older-than", "30d", "--keep-audit")
    assert "Slimmed 3 job(s)" in out
    assert Job.objects.count() == 5
    ok = Job.objects.get(pk=history["ok"].pk)
    assert ok.input_payload == {}
    assert ok.result is None
    assert ok.status == JobStatus.SUCCESS
    kept_failed = Job.objects.get(pk=failed.pk)
    assert kept_failed.status == JobStatus.FAILED
    assert kept_failed.error["error"]["type"] == "PluginExecutionError"
    assert verified()
    # A second run finds nothing left to slim.
    assert "Slimmed 0 job(s)" in prune("--older-than", "30d", "--keep-audit")
    assert verified()


@pytest.mark.parametrize(
    "tamper",
    [
        {"input_payload": {"message": "forged"}},
        {"result": {"echoed": "forged"}},
        {"status": JobStatus.SUCCESS},
    ],
)
def test_a_slimmed_job_edited_afterwards_is_detected(history, tamper):
    prune("--older-than", "30d", "--keep-audit")
    assert verified()
    Job.objects.filter(pk=history["failed"].pk).update(**tamper)
    assert not verified()


def test_a_deleted_job_without_its_pruned_entry_is_still_detected(history):
    Job.objects.filter(pk=history["sync"].pk).delete()
    assert not verified()
