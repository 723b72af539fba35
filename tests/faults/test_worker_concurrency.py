"""One db_worker process running several jobs side by side (WORKER_CONCURRENCY)."""

from __future__ import annotations

import os
import signal

import pytest
from django_tasks_db.models import DBTaskResult

from execution.models import Job, JobStatus
from execution.services import AnalysisExecutionService
from execution.workers.models import WorkerHeartbeat
from tests.faults.conftest import process_gone, wait_until
from tests.plugin_hosts import plugin_hosts
from tests.plugins.sample_plugins import RetriedSleepingPlugin, SleepingPlugin

pytestmark = pytest.mark.django_db(transaction=True)

N = 3
FINAL = {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED}
# A time limit well above the sleeps, so a slow machine fails no job for its pace.
CONCURRENT = {"WORKER_CONCURRENCY": str(N), "PLUGIN_DEFAULT_TIMEOUT_S": "60"}


def submit(plugin: str, repeat: int) -> Job:
    return AnalysisExecutionService().submit(
        plugin_name=plugin, payload={"message": "x", "repeat": repeat}
    )


def statuses(jobs: list[Job]) -> list[str]:
    by_id = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "status"))
    return [by_id[job.pk] for job in jobs]


def all_running(jobs: list[Job]) -> list[Job] | None:
    """The jobs, once every one of them is RUNNING at the same time."""
    fresh = list(Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.RUNNING))
    return fresh if len(fresh) == len(jobs) else None


def all_final(jobs: list[Job]) -> list[Job] | None:
    fresh = list(Job.objects.filter(pk__in=[j.pk for j in jobs]))
    return fresh if all(j.status in FINAL for j in fresh) else None


def test_three_jobs_run_at_the_same_time_each_under_its_own_lease(processes):
    jobs = [submit("sleeping", 1500) for _ in range(N)]
    worker = processes.worker(**CONCURRENT)

    running = wait_until(lambda: all_running(jobs))
    holders = {job.lease_holder for job in running}
    assert len(holders) == N  # one lease each ...
    assert {holder.split(":")[1] for holder in holders} == {str(worker.pid)}  # ... one process
    assert len(plugin_hosts(SleepingPlugin, under=worker.pid)) >= N
    # The heartbeat names one of the jobs it runs (written within CHANGES_GATHERED_S).
    wait_until(
        lambda: WorkerHeartbeat.objects.get().current_job in {job.pk for job in jobs},
        timeout_s=10,
    )

    done = wait_until(lambda: all_final(jobs))
    assert {job.status for job in done} == {JobStatus.SUCCESS}
    # Each started before any other ended: they ran side by side.
    assert max(job.started_at for job in done) < min(job.finished_at for job in done)
    # The heartbeat counts each once its task has ended too (just after its job).
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(current_job=None, jobs_done=N).exists(),
        timeout_s=10,
    )


def test_ctrl_c_with_n_jobs_running_lets_all_of_them_finish(processes):
    jobs = [submit("sleeping", 1500) for _ in range(N)]
    worker = processes.worker(**CONCURRENT)
    wait_until(lambda: all_running(jobs))
    later = submit("sleeping", 1)  # every slot is busy, and after the signal none takes it

    os.kill(worker.pid, signal.SIGINT)
    assert worker.popen.wait(60) == 0
    assert statuses(jobs) == [JobStatus.SUCCESS] * N
    assert statuses([later]) == [JobStatus.PENDING]
    assert WorkerHeartbeat.objects.get().stopped_at is not None


def test_a_second_signal_hands_every_running_job_back(processes):
    jobs = [submit("sleeping", 30_000) for _ in range(N)]
    worker = processes.worker(**CONCURRENT)
    wait_until(lambda: all_running(jobs))

    os.kill(worker.pid, signal.SIGINT)
    os.kill(worker.pid, signal.SIGTERM)
    worker.popen.wait(30)
    handed_back = list(Job.objects.filter(pk__in=[j.pk for j in jobs]))
    assert {(job.status, job.attempt) for job in handed_back} == {(JobStatus.PENDING, 1)}
    assert all(job.attempts[0]["error"]["type"] == "WorkerLost" for job in handed_back)


def test_kill_9_with_n_jobs_running_leaves_each_to_lease_recovery_once(processes):
    # A short time limit: the leases, and so their recovery, end soon after it.
    short = {**CONCURRENT, "PLUGIN_DEFAULT_TIMEOUT_S": "10"}
    jobs = [submit("retried_sleeping", 8000) for _ in range(N)]
    worker = processes.worker(**short)
    running = wait_until(lambda: all_running(jobs))
    hosts = plugin_hosts(RetriedSleepingPlugin, under=worker.pid)

    os.kill(worker.pid, signal.SIGKILL)
    worker.popen.wait(10)
    wait_until(lambda: all(process_gone(pid) for pid in hosts), timeout_s=10)
    # Their next attempts need not sleep long.
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        input_payload={"message": "x", "repeat": 5}
    )

    processes.worker(**short)
    done = wait_until(lambda: all_final(jobs))
    for job in done:
        assert (job.status, job.attempt) == (JobStatus.SUCCESS, 2)
        # Recovered exactly once: one lost attempt, by the killed worker's lease.
        assert [attempt["error"]["type"] for attempt in job.attempts] == ["WorkerLost"]
    lost_tasks = DBTaskResult.objects.filter(pk__in=[job.task_id for job in running])
    assert sorted(task.status for task in lost_tasks) == ["FAILED"] * N


def test_a_job_that_fails_does_not_stop_its_siblings(processes):
    siblings = [submit("sleeping", 6000) for _ in range(N - 1)]
    worker = processes.worker(**CONCURRENT)
    wait_until(lambda: all_running(siblings))
    crashed = submit("crashing", 3)  # its host exits mid-run: PluginCrashed

    failed = wait_until(lambda: all_final([crashed]))[0]
    assert (failed.status, failed.error_type) == (JobStatus.FAILED, "PluginCrashed")
    assert statuses(siblings) == [JobStatus.RUNNING] * (N - 1)  # it ended while they ran
    done = wait_until(lambda: all_final(siblings))
    assert {job.status for job in done} == {JobStatus.SUCCESS}

    after = submit("sleeping", 1)  # and the worker goes on
    assert wait_until(lambda: all_final([after]))[0].status == JobStatus.SUCCESS
    assert worker.alive()
