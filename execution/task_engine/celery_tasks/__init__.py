"""The Celery engine: jobs' tasks travel through a broker (Redis) to ``celery -A project worker``.

With ``celery`` the only package, with ``project/celery.py``, that imports it:

* ``backend``: a django-tasks backend on Celery (``TASKS["default"]``): a task is a
  row of this database (``models.CeleryTask``), and its message is sent to the
  broker when the row's transaction commits;
* ``engine``: the ``TaskEngine`` adapter (``TASK_ENGINE``), which finds lost tasks
  from those rows;
* ``app``: the Celery app and the one Celery task that runs any django-tasks task;
* ``worker``: what a worker process does around it (heartbeat, lease recovery,
  the SECRET_KEY refusal, redelivered messages run at most once);
* ``broker``: reading ``CELERY_BROKER_URL`` (no Celery import: settings use it).

``models`` imports no Celery either: the table exists whichever engine runs.
"""

# The one Celery task the workers know: it runs whichever django-tasks task a message names.
RUN_TASK_NAME = "governed.run_django_task"
