"""The Celery app, where Celery looks for it: ``celery -A project worker`` (docs/celery.md).

Only for TASKS_BACKEND=celery, with ``pip install -e '.[celery]'``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from execution.task_engine.celery_tasks.app import app

__all__ = ["app"]
