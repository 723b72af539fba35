"""A background job's progress, seen through the API while a real db_worker runs it.

The plugin runs in a sandboxed host of the worker (process isolation, the default);
its reports cross to the worker as JSON messages, the worker writes them on the
job, and a gunicorn server shows them to the client that polls.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FAULT_PLUGINS, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PLUGINS = f"{FAULT_PLUGINS},tests.plugins.progress_plugins.TenStepPlugin"


def test_a_ten_step_background_job_shows_its_progress_while_it_runs(processes, token):
    server = processes.server(PLUGINS=PLUGINS)
    server.token = token
    worker = processes.worker(PLUGINS=PLUGINS)
    status, job = server.request(
        "POST", "/v1/jobs", {"plugin": "ten_steps", "payload": {"steps": 10, "pause_ms": 300}}
    )
    assert status == 202, job
    assert job["progress"] is None
    url = f"/v1/jobs/{job['id']}"
    seen: list[dict] = []

    def ended() -> dict | None:
        status, body = server.request("GET", url)
        assert status == 200, body
        if body["status"] == "RUNNING" and body["progress"] is not None:
            seen.append(body["progress"])
        time.sleep(0.05)
        return body if body["status"] not in ("PENDING", "RUNNING") else None

    try:
        final = wait_until(ended, timeout_s=90)
    except AssertionError:
        raise AssertionError(f"{seen[-3:]}\n{worker.output()[-3000:]}") from None
    assert final["status"] == "SUCCESS", final
    assert final["result"] == {"steps_done": 10}
    assert final["progress"]["done"] == 10
    assert final["progress"]["message"] == "step 10 of 10"

    steps = [progress["done"] for progress in seen]
    assert any(0 < done < 10 for done in steps), steps  # seen while it ran, not only at the end
    assert steps == sorted(steps)
    assert {progress["total"] for progress in seen} == {10}
    written = [progress["updated_at"] for progress in seen]
    assert written == sorted(written)
    for progress in seen:
        expected = "starting" if progress["done"] == 0 else f"step {progress['done']} of 10"
        assert progress["message"] == expected
