"""The state machine's hook: the transaction that ends a job makes its callback due.

Called by ``Job._finish`` and ``Job.cancel`` (execution/models.py), the only two
places a job becomes final, inside the transaction that makes it so. The callback
turns DUE and its delivery task is queued through the task engine in that same
transaction: the engine hands the task to a worker only once it commits (the
database engine's row is invisible until then, Celery's message is sent on
commit), so a rolled-back finish sends nothing, and a committed one always has
its task. Imports no service: execution/models.py imports it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from execution.callbacks.models import CallbackState, JobCallback
from execution.clock import database_now
from execution.task_engine import get_task_engine


def callback_due(job: Any) -> bool:
    """Make ``job``'s waiting callback due now and queue its delivery; False if it has none.

    One statement for a job without a callback; none for a job known to have none
    (``Job.may_have_callback``: a synchronous run).
    """
    if not getattr(job, "may_have_callback", True):
        return False
    now = database_now()
    waiting = JobCallback.objects.filter(job_id=job.pk, state=CallbackState.WAITING)
    if not waiting.update(
        state=CallbackState.DUE,
        next_attempt_at=now,
        give_up_at=now + timedelta(seconds=settings.CALLBACK_RETRY_FOR_S),
    ):
        return False
    task_id = get_task_engine().enqueue_callback(job.pk)
    JobCallback.objects.filter(job_id=job.pk).update(task_id=task_id)
    return True
