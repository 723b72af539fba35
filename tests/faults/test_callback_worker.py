"""Completion callbacks delivered by a real db_worker, retried, to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.test import APIClient

from execution.callbacks import signing
from execution.callbacks.models import CallbackState, JobCallback
from tests.execution.callback_receiver import Received, receiver
from tests.faults.conftest import Managed, wait_until

KEY = "fault-callback-signing-key"
CALLBACK_ENV = {
    "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
    "CALLBACK_ALLOW_PRIVATE_ADDRESSES": "1",
    "CALLBACK_SIGNING_KEY": KEY,
    "CALLBACK_RETRY_FIRST_DELAY_S": "0.2",
}


def test_a_db_worker_runs_the_job_then_delivers_its_callback_retried(
    processes, settings, django_user_model
):
    worker = processes.worker(**CALLBACK_ENV)
    client, job_id, received = deliver_retried_callback(worker, "done", settings, django_user_model)

    body = json.loads(received[-1].body)
    assert body["id"] == job_id
    assert body["status"] == "SUCCESS"
    assert body["result"] == {"echoed": "done"}
    seen = client.get(f"/v1/jobs/{job_id}").json()["callback"]
    assert seen["state"] == "DELIVERED"
    assert [a["status_code"] for a in seen["attempts"]] == [500, 200]


def deliver_retried_callback(
    worker: Managed, message: str, settings: Any, user_model: Any
) -> tuple[APIClient, str, list[Received]]:
    """Submit an echo job whose callback's receiver fails once; wait until it is delivered.

    Asserts the two attempts and the final signature. Returns the owner's client,
    the job's id and what the receiver got. Shared by both engines' tests.
    """
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True
    owner = user_model.objects.create_user("hooked", password="pw-hooked-123")
    client = APIClient()
    client.force_authenticate(owner)
    with receiver(500) as hook:
        response = client.post(
            "/v1/jobs",
            {"plugin": "echo", "payload": {"message": message}, "callback_url": hook.url()},
            format="json",
        )
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]

        def delivered() -> bool:
            callback = JobCallback.objects.filter(pk=job_id).first()
            return callback is not None and callback.state == CallbackState.DELIVERED

        wait_until(lambda: delivered() or not worker.alive(), timeout_s=90)
        assert delivered(), worker.output()

    assert [r.headers["X-Callback-Attempt"] for r in hook.received] == ["1", "2"]
    final = hook.received[-1]
    assert signing.verify(final.body, final.headers["X-Signature"], KEY.encode(), now=final.at)
    return client, job_id, hook.received
