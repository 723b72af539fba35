"""Completion callbacks on the Celery engine: a real Celery worker delivers one, retried."""

from __future__ import annotations

import json

import pytest

from execution.models import CeleryTask
from tests.celery.conftest import require_celery, start_celery_worker
from tests.faults.test_callback_worker import CALLBACK_ENV, deliver_retried_callback

require_celery()

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_celery_worker_delivers_the_callback_retried(
    processes, broker, celery_engine, settings, django_user_model
):
    worker = start_celery_worker(processes, broker, **CALLBACK_ENV)
    _, _, received = deliver_retried_callback(worker, "on celery", settings, django_user_model)

    assert json.loads(received[-1].body)["result"] == {"echoed": "on celery"}
    rows = CeleryTask.objects.filter(task_path="execution.tasks.deliver_callback_task")
    assert sorted(rows.values_list("status", flat=True)) == ["SUCCESSFUL", "SUCCESSFUL"]
