"""A plugin that exits, crashes, spins or eats memory under gunicorn: the server lives on.

Each test talks HTTP to a real gunicorn (2 sync workers) and then checks that
the server still answers, that the job is final with the right error type, and
that nothing a plugin started is left running.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import pytest

from execution.models import Job, JobStatus
from tests.faults.conftest import (
    Server,
    asleep,
    descendants,
    group_gone,
    proc_stat,
    process_gone,
    running_host,
    wait_until,
)
from tests.plugin_hosts import group_members, plugin_hosts
from tests.plugins.sample_plugins import SleepingPlugin, SpinningPlugin

pytestmark = pytest.mark.django_db(transaction=True)


def assert_failed_job(body: dict, error_type: str) -> Job:
    job = Job.objects.get(plugin_name=body["plugin"])
    assert job.status == JobStatus.FAILED
    assert job.error_type == error_type
    assert job.error["error"] == body
    return job


def assert_still_serves(server: Server) -> None:
    assert server.alive_and_healthy()
    status, body = server.execute("text_stats", {"text": "Still here. Still answering."})
    assert status == 200, body
    assert body["result"]["sentence_count"] == 2
    assert server.process.alive()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize(
    ("plugin", "payload", "details"),
    [
        ("crashing", {"message": "x", "repeat": 3}, {"exit_code": 3}),
        ("crashing", {"message": "x", "repeat": 0}, {"exit_code": 0}),
        ("segfaulting", {"message": "x"}, {"signal": "SIGSEGV"}),
    ],
    ids=["os-exit-3", "os-exit-0", "segfault"],
)
def test_a_plugin_that_kills_its_process_is_a_crash_and_the_server_lives_on(
    server, plugin, payload, details
):
    status, body = server.execute(plugin, payload)
    assert status == 400
    assert body["detail"]["type"] == "PluginCrashed"
    assert body["detail"]["details"] == details
    assert_failed_job(body["detail"], "PluginCrashed")
    assert_still_serves(server)


def spinning_hosts_settled(server: Server) -> bool:
    """Every host of ``spinning`` sleeps, alone in its group, and no worker keeps two.

    A spinner that was not killed never sleeps; one that was killed has a single
    fresh host in its place.
    """
    hosts = plugin_hosts(SpinningPlugin, under=server.process.pid)
    parents = [proc_stat(host) for host in hosts]
    if None in parents:
        return False  # one ended meanwhile: look again
    per_worker = collections.Counter(fields[1] for fields in parents if fields)
    if any(count > 1 for count in per_worker.values()):
        return False
    return asleep(hosts) and all(group_members(host) == [host] for host in hosts)


def test_twenty_busy_loops_time_out_and_leave_nothing_spinning(server):
    for _ in range(20):
        status, body = server.execute("spinning", {"message": "x"})
        assert status == 400
        assert body["detail"]["type"] == "PluginTimeout"
        assert body["detail"]["details"] == {"timeout_s": 0.5}
        wait_until(lambda: spinning_hosts_settled(server), timeout_s=10)
    assert Job.objects.filter(status=JobStatus.FAILED, plugin_name="spinning").count() == 20
    assert_still_serves(server)


def test_a_plugin_allocating_two_gib_hits_its_memory_limit_not_the_server(server):
    workers = descendants(server.process.pid)
    before = {pid: rss_kb(pid) for pid in workers}
    status, body = server.execute("memory_hog", {"message": "x", "repeat": 2048})
    assert status == 400
    assert body["detail"]["type"] == "PluginResourceLimit"
    assert body["detail"]["details"] == {"max_memory_mb": 256}
    assert_failed_job(body["detail"], "PluginResourceLimit")
    for pid, rss in before.items():  # neither gunicorn nor any of its workers grew by it
        if not process_gone(pid):
            assert rss_kb(pid) - rss < 200 * 1024
    assert_still_serves(server)


@pytest.mark.parametrize("text", ["." * 999_999 + "x", "!?" * 499_999 + "x"])
def test_text_stats_answers_pathological_text_quickly(server, text):
    status, body = server.execute("text_stats", {"text": text})
    assert status == 200, body
    assert body["result"]["word_count"] == 1
    assert Job.objects.get(pk=body["job_id"]).status == JobStatus.SUCCESS


def test_a_sync_job_cancelled_from_another_client_stops_its_plugin(server):
    outcome: dict = {}
    request = threading.Thread(
        target=lambda: outcome.update(
            response=server.execute("sleeping", {"message": "x", "repeat": 4000})
        )
    )
    request.start()
    host = running_host(SleepingPlugin, under=server.process.pid, timeout_s=30)
    job = Job.objects.get(plugin_name="sleeping")
    assert job.status == JobStatus.RUNNING
    status, body = server.request("POST", f"/v1/jobs/{job.pk}/cancel")
    assert status == 200, body
    wait_until(lambda: process_gone(host) and group_gone(host), timeout_s=2)
    request.join(30)
    status, body = outcome["response"]
    assert status == 400
    assert body["detail"]["type"] == "Cancelled"
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert_still_serves(server)
