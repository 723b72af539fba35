"""The django-tasks-db engine: tasks are rows of this database, run by ``manage.py db_worker``.

The only package that imports ``django_tasks_db``: ``engine`` is the adapter,
``worker`` the base of the ``db_worker`` command.
"""
