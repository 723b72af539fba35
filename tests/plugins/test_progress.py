"""Progress a plugin reports from its run: checked, carried as JSON or by a direct call, throttled.

Real plugins in real sandboxed hosts (process isolation) and pool threads, real
jobs through JobExecutionService and the API on the test database. The
throttle's own tests drive it with an injected clock.
"""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest
from django.db import OperationalError, connection, connections
from django.test.utils import CaptureQueriesContext

from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from execution.services.job_execution_service import _Outcome, new_lease_holder
from execution.services.job_progress import ProgressThrottle, write_progress
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.metrics.recorder import DeferredRecorder
from plugins.progress import MAX_MESSAGE_CHARS, ProgressError, ProgressReport, report_progress
from plugins.runtime.control import StopReason
from plugins.runtime.tool_runner import ExecutionResult
from tests.faults.conftest import wait_until
from tests.plugins.progress_plugins import BAD_CALLS, PROGRESS_PLUGINS

THREADED = ["ten_steps_thread", "bad_progress_thread", "progress_burst_thread"]


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = PROGRESS_PLUGINS
    settings.PLUGIN_ISOLATION = "process"
    settings.PLUGIN_THREAD_ALLOWED = THREADED
    settings.JOB_CANCEL_POLL_S = 0.05


def _run(plugin: str, payload: dict) -> Job:
    job = JobExecutionService().execute_now(plugin_name=plugin, payload=payload)
    return Job.objects.get(pk=job.pk)


def _run_job_and_disconnect(service: JobExecutionService, job_id: uuid.UUID) -> None:
    """As a worker's thread would: run the job, then close this thread's connection."""
    try:
        service.run_job(job_id=job_id)
    finally:
        connections.close_all()


# The call itself -------------------------------------------------------------------


def test_outside_a_plugins_run_report_progress_is_a_clear_error():
    with pytest.raises(ProgressError, match=r"only inside a plugin's run\(\)"):
        report_progress(1, 10, "not in a run")


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_a_bad_report_is_refused_before_it_goes_anywhere(call):
    with pytest.raises(ProgressError, match=r"report_progress\(\)"):
        ProgressReport(*BAD_CALLS[call])


def test_a_report_at_the_limits_is_accepted():
    report = ProgressReport(10, 10, "m" * MAX_MESSAGE_CHARS)
    assert report.as_json() == {"done": 10, "total": 10, "message": "m" * MAX_MESSAGE_CHARS}
    assert ProgressReport.from_json(report.as_json()) == report
    assert ProgressReport(0, 1).message == ""


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"done": 1, "total": 2},
        {"done": 1, "total": 2, "message": "", "extra": 1},
        {"done": 1, "total": 2, "message": "\ud800"},  # a host's forged "\\ud800"
    ],
)
def test_a_report_that_crossed_from_a_host_must_have_exactly_its_fields(value):
    with pytest.raises(ProgressError):
        ProgressReport.from_json(value)


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_in_a_run_that_is_no_jobs_reports_are_checked_and_go_nowhere(isolation):
    from plugins.testing import run_plugin
    from tests.plugins.progress_plugins import BadProgressPlugin, TenStepPlugin

    result, error = run_plugin(TenStepPlugin, {"steps": 3}, isolation=isolation)
    assert (result, error) == ({"steps_done": 3}, None)
    result, error = run_plugin(BadProgressPlugin, {"call": "negative_done"}, isolation=isolation)
    assert result is None
    assert error["error"]["message"].startswith("report_progress(): done must be between")


# Bad calls from inside a run, in both isolations ------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plugin", ["bad_progress", "bad_progress_thread"])
@pytest.mark.parametrize(
    "call", ["done_above_total", "bool_total", "long_message", "lone_surrogate_in_message"]
)
def test_a_bad_call_fails_the_run_with_its_own_message(plugin, call):
    job = _run(plugin, {"call": call})
    assert job.status == JobStatus.FAILED
    error = job.error["error"]
    assert error["type"] == "PluginExecutionError"
    assert error["message"].startswith("report_progress(): ")
    assert job.progress is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plugin", ["bad_progress", "bad_progress_thread"])
def test_a_plugin_can_catch_the_error_of_a_bad_call(plugin):
    job = _run(plugin, {"call": "zero_total", "catch": True})
    assert job.status == JobStatus.SUCCESS
    assert job.result == {
        "caught": "ProgressError",
        "message": "report_progress(): total must be at least 1, not 0",
    }


@pytest.mark.django_db(transaction=True)
def test_a_thread_the_plugin_starts_is_outside_its_run():
    job = _run("progress_outside_run", {"where": "thread"})
    assert job.status == JobStatus.SUCCESS
    (caught,) = job.result["caught"]
    assert "only inside a plugin's run()" in caught


@pytest.mark.django_db(transaction=True)
def test_a_host_that_forges_a_progress_message_fails_its_execution():
    job = _run("progress_forged", {"reports": 1})
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "PluginExecutionError"
    assert "something other than its outcome" in job.error["error"]["message"]
    assert job.progress is None


# Progress on the job ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plugin", ["ten_steps", "ten_steps_thread"])
def test_a_finished_job_keeps_its_last_report_and_stdout_stays_output(plugin):
    job = _run(plugin, {"steps": 10})
    assert job.status == JobStatus.SUCCESS
    assert job.progress == {"done": 10, "total": 10, "message": "step 10 of 10"}
    assert job.progress_updated_at is not None
    assert job.progress_updated_at >= job.started_at
    if plugin == "ten_steps":  # a host's stdout is captured (issue 18), and is not progress
        assert "step 10 (stdout is not progress)" in job.plugin_output


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plugin", ["progress_burst", "progress_burst_thread"])
def test_a_burst_of_reports_is_written_a_few_times_and_the_last_is_kept(plugin):
    with CaptureQueriesContext(connection) as queries:
        job = _run(plugin, {"reports": 3000})
    assert job.status == JobStatus.SUCCESS
    assert job.progress == {"done": 3000, "total": 3000, "message": "report 3000"}
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("UPDATE") and '"progress" = ' in q["sql"]
    ]
    seconds = job.elapsed_ms / 1000
    # At most 2 a second, plus the one written with the outcome.
    assert 1 <= len(writes) <= 2 * seconds + 1, (len(writes), seconds)


@pytest.mark.django_db(transaction=True)
def test_a_plugin_that_reports_without_end_still_meets_its_time_limit():
    job = _run("progress_flood", {"reports": 100})
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "PluginTimeout"
    assert job.progress["message"] == "flooding"


@pytest.mark.django_db(transaction=True)
def test_a_running_job_shows_its_progress_in_the_api_thread_isolation(tmp_path, user, api_client):
    """The plugin waits for a gate before each step; the test opens them one by one."""
    service = JobExecutionService()
    job = service.create_job(
        plugin_name="ten_steps_thread",
        payload={"steps": 10, "gate_dir": str(tmp_path)},
        requested_by=user,
    )
    url = f"/v1/jobs/{job.pk}"
    assert api_client.get(url).json()["progress"] is None
    runner = threading.Thread(target=_run_job_and_disconnect, args=(service, job.pk))
    runner.start()
    try:
        opened = 0
        for step in (1, 2, 5):
            while opened < step:
                opened += 1
                (tmp_path / f"step-{opened}").touch()

            def shows(step: int = step) -> dict | None:
                body = api_client.get(url).json()
                progress = body["progress"]
                if body["status"] == "RUNNING" and progress and progress["done"] == step:
                    return progress
                return None

            progress = wait_until(shows, timeout_s=30, step_s=0.02)
            assert progress["total"] == 10
            assert progress["message"] == f"step {step} of 10"
            assert progress["updated_at"]
    finally:
        for opened in range(1, 11):
            (tmp_path / f"step-{opened}").touch()
        runner.join(60)
    body = api_client.get(url).json()
    assert body["status"] == "SUCCESS"
    assert body["progress"]["done"] == 10
    listed = api_client.get("/v1/jobs").json()["results"]
    assert [row["progress"]["done"] for row in listed if row["id"] == str(job.pk)] == [10]


@pytest.mark.django_db(transaction=True)
def test_a_running_job_shows_its_progress_in_the_api_process_isolation(user, api_client):
    service = JobExecutionService()
    job = service.create_job(
        plugin_name="ten_steps", payload={"steps": 10, "pause_ms": 150}, requested_by=user
    )
    url = f"/v1/jobs/{job.pk}"
    runner = threading.Thread(target=_run_job_and_disconnect, args=(service, job.pk))
    runner.start()
    seen: list[int] = []
    try:

        def finished() -> bool:
            body = api_client.get(url).json()
            if body["status"] == "RUNNING" and body["progress"]:
                seen.append(body["progress"]["done"])
            return body["status"] in ("SUCCESS", "FAILED")

        wait_until(finished, timeout_s=60, step_s=0.02)
    finally:
        runner.join(60)
    assert seen == sorted(seen)
    assert any(0 < done < 10 for done in seen), seen
    assert Job.objects.get(pk=job.pk).progress["done"] == 10


# The conditional write --------------------------------------------------------------


@pytest.fixture
def running_job(db) -> Job:
    job = Job.objects.claimed_by_creator(
        id=uuid.uuid4(),
        plugin_name="ten_steps",
        input_payload={},
        lease_holder=new_lease_holder(),
        lease_s=60,
    )
    job.insert()
    return job


def test_a_write_touches_only_the_running_job_of_the_same_run(running_job):
    assert write_progress(job=running_job, report=ProgressReport(1, 4, "one"))
    stored = Job.objects.get(pk=running_job.pk)
    assert stored.progress == {"done": 1, "total": 4, "message": "one"}
    first_written = stored.progress_updated_at
    assert first_written is not None

    other_run = Job(pk=running_job.pk, lease_holder=new_lease_holder())
    assert not write_progress(job=other_run, report=ProgressReport(2, 4, "another run's"))
    JobExecutionService().cancel_job(job=running_job)
    assert not write_progress(job=running_job, report=ProgressReport(3, 4, "after the cancel"))
    stored = Job.objects.get(pk=running_job.pk)
    assert stored.progress == {"done": 1, "total": 4, "message": "one"}
    assert stored.progress_updated_at == first_written


def test_a_cancelled_job_keeps_the_report_the_throttle_still_held(running_job):
    """The plugin reported, the throttle held it, the job was cancelled: the outcome writes it."""
    assert write_progress(job=running_job, report=ProgressReport(1, 4, "one"))
    JobExecutionService().cancel_job(job=running_job)
    cancelled = build_error_envelope(ErrorType.CANCELLED, "Cancelled by the system")
    with DeferredRecorder() as pending_metrics:
        outcome = _Outcome(
            running_job,
            ExecutionResult(None, cancelled),
            StopReason.CANCELLED,
            pending_metrics,
            elapsed_ms=5.0,
            record=JobExecutionService()._record_outcome,
            progress=ProgressReport(3, 4, "three"),
        )
        assert outcome.try_once()
    stored = Job.objects.get(pk=running_job.pk)
    assert stored.status == JobStatus.CANCELLED
    assert stored.progress == {"done": 3, "total": 4, "message": "three"}
    assert stored.progress_updated_at is not None


def test_a_job_handed_back_for_its_next_attempt_forgets_the_last_attempts_progress(running_job):
    from execution.clock import database_now

    write_progress(job=running_job, report=ProgressReport(3, 4))
    running_job.refresh_from_db()
    running_job.requeue(
        {"error": {"type": "WorkerLost"}},
        next_attempt_at=database_now(),
        retry=True,
        task_id="00000000-0000-0000-0000-000000000001",
    )
    stored = Job.objects.get(pk=running_job.pk)
    assert (stored.status, stored.progress, stored.progress_updated_at) == (
        JobStatus.PENDING,
        None,
        None,
    )


# The throttle, on an injected clock --------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: FakeClock, written: list[ProgressReport], fail: list[bool] | None = None):
    def write(report: ProgressReport) -> None:
        if fail:
            fail.pop()
            raise OperationalError("database is locked")
        written.append(report)

    return ProgressThrottle(write, interval_s=0.5, clock=clock)


def test_reports_are_held_until_the_window_opens_then_the_latest_is_written():
    clock, written = FakeClock(), list[ProgressReport]()
    throttle = _throttle(clock, written)  # the run starts at 100.0
    for done, at in ((1, 100.0), (2, 100.1), (3, 100.49)):
        clock.now = at
        throttle.offer(ProgressReport(done, 10))
        throttle.write_due()
    assert written == []  # the first window opens half a second into the run
    clock.now = 100.5  # it opens with no new report: the held one is written
    throttle.write_due()
    assert written == [ProgressReport(3, 10)]
    clock.now = 100.7
    throttle.offer(ProgressReport(4, 10))
    throttle.write_due()
    clock.now = 100.99
    throttle.write_due()
    assert written == [ProgressReport(3, 10)]  # held: the next window opens at 101.0
    clock.now = 101.0
    throttle.write_due()
    assert written == [ProgressReport(3, 10), ProgressReport(4, 10)]
    clock.now = 102.0
    throttle.write_due()
    assert len(written) == 2  # nothing held: nothing written again
    assert throttle.close() is None


def test_a_run_shorter_than_the_window_leaves_its_last_report_to_the_outcome():
    clock, written = FakeClock(), list[ProgressReport]()
    throttle = _throttle(clock, written)
    for done in range(1, 11):
        clock.now = 100.0 + done / 100
        throttle.offer(ProgressReport(done, 10))
        throttle.write_due()
    assert written == []
    assert throttle.close() == ProgressReport(10, 10)


def test_at_most_two_writes_a_second_however_many_reports_and_the_last_is_kept():
    clock, written = FakeClock(), list[ProgressReport]()
    throttle = _throttle(clock, written)
    for done in range(1, 10_000):  # 9,999 reports over 10 seconds, polled after each
        clock.now = 100.0 + done / 1000
        throttle.offer(ProgressReport(done, 10_000))
        throttle.write_due()
    assert [report.done for report in written] == list(range(500, 10_000, 500))  # 2 a second
    times = [100.0 + report.done / 1000 for report in written]
    assert all(later - earlier >= 0.5 for earlier, later in itertools.pairwise(times))
    last = throttle.close()  # what the outcome writes: the report made after the last write
    assert last == ProgressReport(9_999, 10_000)
    throttle.offer(ProgressReport(1, 10_000))  # a thread left behind after the end
    clock.now += 10
    throttle.write_due()
    assert len(written) == 19
    assert throttle.close() is None


def test_a_failed_write_keeps_the_report_for_the_next_window_unless_a_newer_came():
    clock, written = FakeClock(), list[ProgressReport]()
    throttle = _throttle(clock, written, fail=[True])
    throttle.offer(ProgressReport(1, 10))
    clock.now = 100.5
    throttle.write_due()  # fails: database is locked
    assert written == []
    clock.now = 100.8
    throttle.write_due()
    assert written == []  # a failure waits for the window too: it does not hammer the lock
    clock.now = 101.0
    throttle.write_due()
    assert written == [ProgressReport(1, 10)]
    clock.now = 101.5
    throttle.offer(ProgressReport(2, 10))
    throttle.offer(ProgressReport(3, 10))
    throttle.write_due()
    assert written == [ProgressReport(1, 10), ProgressReport(3, 10)]


def test_the_admin_shows_a_running_jobs_progress(running_job, admin_client):
    write_progress(job=running_job, report=ProgressReport(3, 10, "resizing <tile>"))
    page = admin_client.get(f"/admin/execution/job/{running_job.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<progress value="3" max="10"></progress> 3 of 10 (30%)' in html
    assert "resizing &lt;tile&gt;" in html
    listing = admin_client.get("/admin/execution/job/").content.decode()
    assert "3/10" in listing


def test_a_job_without_progress_says_none(running_job, admin_client):
    page = admin_client.get(f"/admin/execution/job/{running_job.pk}/change/").content.decode()
    assert "<progress" not in page
