"""The Celery app (``project/celery.py`` exposes it: ``celery -A project worker``).

Its configuration is Django's settings under the ``CELERY_`` prefix (Celery's
convention), which set at-least-once delivery (project/settings.py, "Celery
engine"). It knows one task, which runs whichever django-tasks task a message
names; Django models load only once the worker has set Django up, so the
worker's code is imported inside the handlers.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, signals

from execution.task_engine.celery_tasks import RUN_TASK_NAME

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name=RUN_TASK_NAME, bind=True)
def run_django_task(
    self: Task[Any, Any], task_path: str, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    from execution.task_engine.celery_tasks import worker

    return worker.run_django_task(self, task_path, args, kwargs)


@signals.worker_init.connect(weak=False)
def _worker_starts(sender: Any = None, **_: Any) -> None:
    from execution.task_engine.celery_tasks import worker

    worker.refuse_to_start_unless_ready(sender)


@signals.worker_process_init.connect(weak=False)
def _pool_process_starts(**_: Any) -> None:
    from execution.task_engine.celery_tasks import worker

    worker.start_serving()


@signals.worker_ready.connect(weak=False)
def _worker_ready(sender: Any = None, **_: Any) -> None:
    from execution.task_engine.celery_tasks import worker

    worker.start_serving_in_main_process(sender)


@signals.worker_process_shutdown.connect(weak=False)
@signals.worker_shutdown.connect(weak=False)
def _process_stops(**_: Any) -> None:
    from execution.task_engine.celery_tasks import worker

    worker.stop_serving()
