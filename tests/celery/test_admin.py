"""The Celery tasks' rows in the admin, read-only, beside the jobs (no Celery needed)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from execution.models import CeleryTask

pytestmark = pytest.mark.django_db


def test_staff_read_celery_tasks_and_cannot_change_them(admin_client):
    task = CeleryTask.objects.create(
        id=uuid.uuid4(), task_path="execution.tasks.run_job_task", worker_id="celery:vm:1"
    )
    listing = admin_client.get(reverse("admin:execution_celerytask_changelist"))
    assert listing.status_code == 200
    assert str(task.pk) in listing.content.decode()
    assert admin_client.get(reverse("admin:execution_celerytask_add")).status_code == 403
    change = reverse("admin:execution_celerytask_change", args=[task.pk])
    posted = admin_client.post(change, {"status": "FAILED"})
    assert posted.status_code == 403
    task.refresh_from_db()
    assert task.status == "QUEUED"
