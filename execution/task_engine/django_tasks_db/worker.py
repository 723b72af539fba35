"""The ``db_worker`` command: django-tasks-db's worker, made to never leave a job behind.

Same options as django-tasks-db's command, and on top of it:

* the first SIGTERM or Ctrl-C lets the running job finish (within its plugin's
  time limit), then stops; a second one stops the plugin and hands the job back
  to the queue at once; a third exits immediately;
* a database outage is logged and waited out with a growing pause, and the
  worker resumes by itself when the database is back;
* the worker recovers lost jobs (expired leases) in the background, like every
  web process does.

``execution/management/commands/db_worker.py`` exposes it; the ``execution`` app
is listed before ``django_tasks_db`` in INSTALLED_APPS so that it is the one
``manage.py db_worker`` runs.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django_tasks_db.management.commands import db_worker

from execution.audit.sealer import AuditSealer
from execution.services.job_execution_service import release_running_jobs
from execution.services.lease_recovery import LeaseMonitor
from plugins.runtime.tool_runner import warm_up_once

# django-tasks-db's logger: the command configures its output (-v), so our lines show with its own.
logger = logging.getLogger("django_tasks_db")

OUTAGE_FIRST_PAUSE_S = 0.5
OUTAGE_MAX_PAUSE_S = 5.0
HEALTHY_RUN_S = 30.0


class GovernedWorker(db_worker.Worker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signals_received = 0

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        self._signals_received += 1
        name = signal.strsignal(signum)
        if self._signals_received == 1:
            # No exit from here: between taking a task and claiming its job, an exit
            # would strand the job. The loop ends after what it is doing (at most
            # the running job, within its time limit, or one --interval of sleep).
            self.running = False
            logger.warning(
                "Received %s: the worker stops once its running job (if any) is done, "
                "within the job's time limit. Again to hand the job back to the queue now.",
                name,
            )
        elif self._signals_received == 2:
            logger.warning("Received %s: stopping the running job and handing it back.", name)
            release_running_jobs()
        else:
            logger.warning("Received %s: exiting now.", name)
            self.reset_signals()
            sys.exit(1)

    def run(self) -> None:
        LeaseMonitor.ensure_started()
        AuditSealer.ensure_started()
        pause = OUTAGE_FIRST_PAUSE_S
        while self.running:
            started = time.monotonic()
            try:
                super().run()
                return
            except DatabaseError as exc:
                if time.monotonic() - started > HEALTHY_RUN_S:
                    pause = OUTAGE_FIRST_PAUSE_S
                logger.warning(
                    "The database is unavailable (%s: %s); trying again in %.1f s",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    pause,
                )
                connections.close_all()
                time.sleep(pause)
                pause = min(pause * 2, OUTAGE_MAX_PAUSE_S)


class Command(db_worker.Command):
    help = (
        "Run a database background worker that never orphans a job: Ctrl-C finishes the "
        "running job, a second Ctrl-C hands it back; it rides out database outages."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        # An autoreload kills the worker process in the middle of a job.
        parser.set_defaults(reload=False)

    # Upstream's handle() builds its own Worker, with no hook for another class:
    # this one builds GovernedWorker from the same options.
    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        **options: Any,
    ) -> None:
        if reload:
            raise CommandError(
                "--reload would kill the running job on every code change; restart the "
                "worker instead (Ctrl-C lets its job finish)"
            )
        self.configure_logging(verbosity)
        queue_names = queue_name.split(",")
        excluded_queue_names = exclude_queues.split(",") if exclude_queues else []
        if excluded_queue_names and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = GovernedWorker(
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded_queue_names,
        )
        warm_up_once()
        worker.configure_signals()
        worker.run()
