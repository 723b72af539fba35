"""Completion callbacks on the Celery engine: a real Celery worker delivers one, retried."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from execution.callbacks import signing
from execution.callbacks.models import CallbackState, JobCallback
from execution.models import CeleryTask
from tests.celery.conftest import require_celery, start_celery_worker
from tests.execution.callback_receiver import receiver
from tests.faults.conftest import wait_until
from tests.faults.test_callback_worker import CALLBACK_ENV, KEY

require_celery()

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_celery_worker_delivers_the_callback_retried(
    processes, broker, celery_engine, settings, django_user_model
):
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_PRIVATE_ADDRESSES = True
    owner = django_user_model.objects.create_user("hooked", password="pw-hooked-123")
    client = APIClient()
    client.force_authenticate(owner)
    worker = start_celery_worker(processes, broker, **CALLBACK_ENV)
    with receiver(500) as hook:
        response = client.post(
            "/v1/jobs",
            {"plugin": "echo", "payload": {"message": "on celery"}, "callback_url": hook.url()},
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
    assert json.loads(final.body)["result"] == {"echoed": "on celery"}
    rows = CeleryTask.objects.filter(task_path="execution.tasks.deliver_callback_task")
    assert sorted(rows.values_list("status", flat=True)) == ["SUCCESSFUL", "SUCCESSFUL"]
