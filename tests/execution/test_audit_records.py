"""verify() shows tampering with the records the audit describes: jobs and plugin metrics.

The issue's motivating cases, each done with raw SQL as anyone who can write to
the database would: a job's result edited, a job deleted, a SUCCESS job
inserted "requested by" someone else, a plugin's success_count set.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection

from execution.audit.chain import seal
from execution.audit.retention import prunable_through, prune_entries, prune_jobs
from execution.audit.verify import verify
from execution.models import Job, JobStatus
from plugins.models import PluginMetrics
from tests.execution import audit_scenarios as scenario
from tests.execution.audit_scenarios import sql

JOB_TABLE = Job._meta.db_table
METRICS_TABLE = PluginMetrics._meta.db_table


@pytest.fixture
def history(history):
    """The shared history, which must verify before anything is changed."""
    assert verify().ok
    return history


def db_id(job_id: uuid.UUID):
    return Job._meta.pk.get_db_prep_value(job_id, connection)


def record_problems() -> list[str]:
    report = verify()
    assert report.chain_problem is None  # the chain itself was not touched
    return [problem.message for problem in report.record_problems]


def test_an_edited_result_is_found(history):
    job = history["ok"]
    sql(
        f"UPDATE {JOB_TABLE} SET result = %s WHERE id = %s", ['{"echoed": "forged"}', db_id(job.pk)]
    )
    (problem,) = record_problems()
    assert str(job.pk) in problem
    assert "result" in problem


def test_a_failure_turned_into_a_success_is_found(history):
    job = history["failed"]
    sql(
        f"UPDATE {JOB_TABLE} SET status = 'SUCCESS', error = NULL, result = '{{}}' WHERE id = %s",
        [db_id(job.pk)],
    )
    (problem,) = record_problems()
    assert f"Job {job.pk} is SUCCESS, but its last entry" in problem


def test_an_edited_error_type_is_found(history):
    job = history["failed"]
    error = {"error": {"type": "PluginTimeout", "message": "slow", "details": {}}}
    sql(f"UPDATE {JOB_TABLE} SET error = %s WHERE id = %s", [json.dumps(error), db_id(job.pk)])
    (problem,) = record_problems()
    assert "'PluginTimeout'" in problem


def test_an_edited_input_is_found(history):
    job = history["pending"]
    sql(
        f"UPDATE {JOB_TABLE} SET input_payload = %s WHERE id = %s",
        ['{"message": "other"}', db_id(job.pk)],
    )
    (problem,) = record_problems()
    assert "input" in problem


def test_a_changed_requester_is_found(history, other):
    job = history["ok"]
    sql(f"UPDATE {JOB_TABLE} SET requested_by_id = %s WHERE id = %s", [other.pk, db_id(job.pk)])
    (problem,) = record_problems()
    assert f"requested by user id {other.pk}" in problem


def test_a_requester_erased_is_found_while_that_user_exists(history):
    job = history["ok"]
    sql(f"UPDATE {JOB_TABLE} SET requested_by_id = NULL WHERE id = %s", [db_id(job.pk)])
    (problem,) = record_problems()
    assert "nobody requested it" in problem


def test_a_requester_deleted_as_a_user_is_not_tampering(history, other):
    other.delete()  # Job.requested_by is SET_NULL: the jobs stay, without a requester
    assert verify().ok


def test_a_deleted_job_is_found(history):
    job = history["cancelled"]
    sql(f"DELETE FROM {JOB_TABLE} WHERE id = %s", [db_id(job.pk)])
    (problem,) = record_problems()
    assert f"Job {job.pk} is in the audit" in problem
    assert "deleted" in problem


def test_an_inserted_success_job_requested_by_someone_else_is_found(history, other):
    forged = uuid.uuid4()
    sql(
        f"INSERT INTO {JOB_TABLE} (id, plugin_name, plugin_version, plugin_fingerprint, "
        "requested_version, status, input_payload, result, requested_by_id, created_at, "
        "attempt, max_attempts, attempts, lease_holder, request_id, plugin_output) "
        "VALUES (%s, 'echo', '1.0', '', '', 'SUCCESS', '{}', '{}', %s, %s, 1, 1, '[]', '', '', '')",
        [
            db_id(forged),
            other.pk,
            connection.ops.adapt_datetimefield_value(history["ok"].created_at),
        ],
    )
    (problem,) = record_problems()
    assert problem == f"Job {forged} has no job.submitted entry: inserted"


def test_a_set_success_count_is_found(history):
    sql(f"UPDATE {METRICS_TABLE} SET success_count = 1000 WHERE plugin_name = 'echo'")
    (problem,) = record_problems()
    assert problem == "Plugin 'echo' has success_count 1000, but the audit counts 2: edited"


def test_a_deleted_metrics_row_is_found(history):
    sql(f"DELETE FROM {METRICS_TABLE} WHERE plugin_name = 'echo'")
    (problem,) = record_problems()
    assert "metrics row is missing" in problem


def test_a_reverted_job_is_found(history):
    job = history["ok"]
    sql(f"UPDATE {JOB_TABLE} SET status = 'PENDING' WHERE id = %s", [db_id(job.pk)])
    (problem,) = record_problems()
    assert "is PENDING" in problem


def test_jobs_moving_on_after_the_seal_still_verify(history):
    """Unsealed entries count too: the record check sees what committed with each change."""
    scenario.succeed(scenario.start(history["pending"]))
    assert verify().ok


def test_jobs_that_predate_the_audit_verify_and_a_later_insert_does_not(db, user, settings):
    settings.AUDIT_ENABLED = False
    before = [scenario.submit(user) for _ in range(3)]
    scenario.succeed(scenario.start(before[0]))
    settings.AUDIT_ENABLED = True
    scenario.succeed(scenario.start(scenario.submit(user)))
    seal()  # the chain begins: its baseline has the three jobs and their one success
    report = verify()
    assert report.ok, report.first_problem
    scenario.succeed(scenario.start(before[1]))  # an old job finishing under the audit
    assert verify().ok
    prune_jobs([before[2].pk])  # an old job pruned, then its entry pruned too
    seal()
    prune_entries(prunable_through())
    assert verify().ok, verify().first_problem
    settings.AUDIT_ENABLED = False
    sneaked = scenario.submit(user)
    messages = [p.message for p in verify().record_problems]
    assert any("jobs have no job.submitted entry" in m for m in messages), messages
    assert Job.objects.filter(pk=sneaked.pk, status=JobStatus.PENDING).exists()


@pytest.mark.parametrize("says_so", [True, False])
def test_a_job_discarded_on_the_sync_path_is_gone_only_if_an_entry_says_so(db, user, says_so):
    """The sync path removes its provisional job when the plugin refuses the input.

    Job.discard records request.refused with that job's id, in the transaction that
    removes it; a job removed any other way shows as deleted.
    """
    job = scenario.insert_running(user)
    if says_so:
        assert job.discard()
    else:
        Job.objects.filter(pk=job.pk).delete()
    seal()
    messages = [p.message for p in verify().record_problems]
    assert messages == ([] if says_so else [messages[0]])
    if not says_so:
        assert f"Job {job.pk} is in the audit" in messages[0]
