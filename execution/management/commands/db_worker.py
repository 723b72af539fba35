"""``manage.py db_worker``: the django-tasks-db engine's worker, which never orphans a job."""

from execution.task_engine.django_tasks_db.worker import Command

__all__ = ["Command"]
