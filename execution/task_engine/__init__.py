"""The task-engine seam: the one way the project reaches its task queue.

``settings.TASK_ENGINE`` names the adapter; each engine is one subpackage
here (``django_tasks_db/`` today), and the only code that imports its library.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from execution.task_engine.base import TaskEngine


def get_task_engine() -> TaskEngine:
    """The adapter ``settings.TASK_ENGINE`` names.

    Loaded by its dotted path, so the services that queue jobs never import
    the task definitions the adapter enqueues (which import the services).
    """
    engine: TaskEngine = import_string(settings.TASK_ENGINE)()
    return engine
