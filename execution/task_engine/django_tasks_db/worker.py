"""The ``db_worker`` command: django-tasks-db's worker, made to never leave a job behind.

Same options as django-tasks-db's command, and on top of it:

* it runs up to ``--concurrency`` jobs at once (``WORKER_CONCURRENCY``), each in
  a thread of its own (runners.py) and under its own lease;
* the first SIGTERM or Ctrl-C lets the running jobs finish (within their plugins'
  time limits), then stops; a second one stops the plugins and hands the jobs
  back to the queue at once; a third exits immediately;
* a database outage is logged and waited out with a growing pause, and the
  worker resumes by itself when the database is back;
* the worker recovers lost jobs (expired leases) in the background, like every
  web process does;
* it takes the task of the job that should start next (execution/policy/
  scheduling.py): in turns among requesters rather than first come, first
  served (``JOB_FAIR_SCHEDULING``), and never one of a plugin at its
  ``max_concurrency``;
* an idle worker waits for work in :meth:`GovernedWorker._wait_for_work`: on
  PostgreSQL it is woken by a notification as soon as a task is queued, with
  ``--interval`` as the fallback poll (wakeup.py).

``execution/management/commands/db_worker.py`` exposes it; the ``execution`` app
is listed before ``django_tasks_db`` in INSTALLED_APPS so that it is the one
``manage.py db_worker`` runs.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import time
from argparse import ArgumentParser, ArgumentTypeError
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, OperationalError, close_old_connections, connections
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.management.commands import db_worker
from django_tasks_db.models import DBTaskResult, DBTaskResultQuerySet, get_date_max
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from execution.audit.sealer import AuditSealer
from execution.clock import now_sql
from execution.models import Job, JobStatus
from execution.policy import scheduling
from execution.services.job_execution_service import release_running_jobs
from execution.services.lease_recovery import LeaseMonitor
from execution.sql import commit_without_flush
from execution.task_engine.django_tasks_db.runners import TaskRunners
from execution.task_engine.django_tasks_db.wakeup import QueuedTask, Wakeup
from execution.workers.heartbeat import Heartbeat
from plugins.runtime.isolation.process import ProcessIsolation
from plugins.runtime.tool_runner import warm_up_once
from project.secret_key import MISSING_SECRET_KEY, secret_key_is_set

# django-tasks-db's logger: the command configures its output (-v), so our lines show with its own.
logger = logging.getLogger("django_tasks_db")

OUTAGE_FIRST_PAUSE_S = 0.5
OUTAGE_MAX_PAUSE_S = 5.0
HEALTHY_RUN_S = 30.0
# The partial index of the queued jobs in the fair queue's order (execution/models.py).
FAIR_QUEUE_INDEX = "job_fair_queue_idx"
# How long the loop waits for a busy runner to get free before it checks whether to stop.
SLOT_WAIT_S = 0.5


class GovernedWorker(db_worker.Worker):
    def __init__(self, *, concurrency: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signals_received = 0
        self._heartbeat = Heartbeat(self.worker_id)
        self._beating = False
        self._wakeup: Wakeup | None = None
        self._runners = TaskRunners(concurrency, run=self.run_task)
        self._taken = 0

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        self._signals_received += 1
        name = signal.strsignal(signum)
        if self._signals_received == 1:
            # No exit from here: between taking a task and claiming its job, an exit
            # would strand the job. The loop takes no more tasks and ends after what
            # it is doing (the running jobs, within their time limits); an idle
            # wait ends at once.
            self.running = False
            if self._wakeup is not None:
                self._wakeup.interrupt()
            logger.warning(
                "Received %s: the worker stops once its running jobs (%d) are done, "
                "within their time limits. Again to hand them back to the queue now.",
                name,
                self._runners.busy,
            )
        elif self._signals_received == 2:
            logger.warning("Received %s: stopping the running jobs and handing them back.", name)
            release_running_jobs()
        else:
            logger.warning("Received %s: exiting now.", name)
            self.reset_signals()
            sys.exit(1)

    def run(self) -> None:
        LeaseMonitor.ensure_started()
        AuditSealer.ensure_started()
        self._runners.start()
        pause = OUTAGE_FIRST_PAUSE_S
        while self.running:
            started = time.monotonic()
            try:
                self._serve()
                break
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
        self._runners.finish()
        if self._beating:
            self._heartbeat.stop()
        if self._wakeup is not None:
            self._wakeup.close()

    def run_task(self, db_task_result: DBTaskResult[Any, Any]) -> None:
        """Upstream's run (in a runner thread), with the heartbeat naming the job while it runs."""
        self._heartbeat.job_started(db_task_result.id)
        try:
            super().run_task(db_task_result)
        finally:
            self._heartbeat.job_finished(db_task_result.id)

    def _serve(self) -> None:
        """Take tasks and hand them to the runners until stopped (upstream's loop, widened).

        A slot first, then the task: a task is claimed only when a runner is
        free to start it at once. Upstream's run_task counts what ran; the loop
        counts what it took, for ``--max-tasks``.
        """
        logger.info(
            "Starting worker worker_id=%s queues=%s concurrency=%d",
            self.worker_id,
            ",".join(self.queue_names),
            self._runners.size,
        )
        if not self._beating:  # once per process, not again after an outage
            self._heartbeat.start()
            self._beating = True
        if self.startup_delay and self.interval:
            time.sleep(random.random())  # spreads the workers' first polls
        while self.running:
            if not self._runners.take_slot(timeout_s=SLOT_WAIT_S):
                continue  # all busy: look again whether to stop, then wait on
            if not self.running:  # a signal came while it waited for the slot
                self._runners.give_back_slot()
                break
            close_old_connections()
            try:
                task_result, looked = self._take_next_task()
            except BaseException:
                self._runners.give_back_slot()
                raise
            if task_result is None:
                self._runners.give_back_slot()
            else:
                self._runners.run(task_result)
                self._taken += 1
            if self.batch and looked and task_result is None:
                if self._runners.wait_idle(timeout_s=0):
                    logger.info("No more tasks to run for worker_id=%s - exiting.", self.worker_id)
                    return
                # Running jobs may queue more (a retry): look again once they have ended.
                self._runners.wait_idle()
                continue
            if self.max_tasks is not None and self._taken >= self.max_tasks:
                logger.info("Took %d tasks on worker=%s - exiting.", self._taken, self.worker_id)
                return
            if self.running and task_result is None and looked:
                self._wait_for_work(self.interval)

    def _wait_for_work(self, interval: float) -> None:
        """Wait until a task may be ready: up to ``interval``, less if one is queued meanwhile.

        The wakeup is made at the first wait. On PostgreSQL that wait starts
        listening and returns at once, and the worker polls again: a task queued
        before the listening began is found by that poll, any later one notifies.
        """
        close_old_connections()
        if self._wakeup is None:
            self._wakeup = Wakeup.for_connection(
                DBTaskResult.objects.db, wanted=self._could_run, name=self.worker_id
            )
        self._wakeup.wait(interval)

    def _could_run(self, task: QueuedTask) -> bool:
        """Whether a queued task is one this worker takes (its backend and queues)."""
        if task.backend_name != self.backend_name:
            return False
        if task.queue_name in self.excluded_queue_names:
            return False
        return self.process_all_queues or task.queue_name in self.queue_names

    def _take_next_task(self) -> tuple[DBTaskResult[Any, Any] | None, bool]:
        """Take the next task and mark it ours; whether the queue could be read at all.

        On SQLite the transaction is exclusive, on PostgreSQL the row is locked
        and others skip it: one task, one worker.
        """
        tasks = self._ready_tasks()
        try:
            # Losing the claim in a crash only leaves the task to be taken again.
            with exclusive_transaction(tasks.db), commit_without_flush(tasks.db):
                task_result = self._next_task(tasks)
                if task_result is not None:
                    task_result.claim(self.worker_id)
        except OperationalError as exc:
            if is_locked_database_exception(exc):  # another writer; it unlocks soon
                return None, False
            raise
        return task_result, True

    def _ready_tasks(self) -> DBTaskResultQuerySet:
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        return tasks

    def _next_task(self, tasks: DBTaskResultQuerySet) -> DBTaskResult[Any, Any] | None:
        """The task of the job that should start next; else any other ready task, oldest first.

        Fair: the head of the fair queue, in one statement. Otherwise, or when no
        queued job may start, django-tasks-db's own order, leaving out the tasks
        of jobs that must not start now (their plugin is at its cap) and, when
        fair, of every queued job (the fair queue had none that could start).
        """
        blocked = scheduling.plugins_at_cap()
        fair = scheduling.fair_scheduling()
        if fair:
            head = self._fair_head(blocked)
            if head is not None:
                return head
        if fair or blocked:
            queued = Job.objects.filter(status=JobStatus.PENDING, task_id__isnull=False)
            if not fair:
                queued = queued.filter(plugin_name__in=blocked)
            tasks = tasks.exclude(pk__in=queued.values("task_id"))
        return tasks.get_locked()

    def _fair_head(self, blocked: frozenset[str]) -> DBTaskResult[Any, Any] | None:
        """The ready task of the first job in the fair queue that may start now.

        Walks the queue's partial index (job_fair_queue_idx) in order and looks
        each job's task up by its key: the first few jobs answer, whatever the
        queue's length. The job side is scheduling.claimable_jobs() in SQL.
        """
        connection = connections[DBTaskResult.objects.db]
        params: list[Any] = [
            self.backend_name,
            connection.ops.adapt_datetimefield_value(get_date_max()),
            connection.ops.adapt_datetimefield_value(timezone.now()),
        ]
        conditions = []
        if not self.process_all_queues:
            conditions.append(f"t.queue_name IN ({_placeholders(self.queue_names)})")
            params += self.queue_names
        if self.excluded_queue_names:
            conditions.append(f"t.queue_name NOT IN ({_placeholders(self.excluded_queue_names)})")
            params += self.excluded_queue_names
        if blocked:
            conditions.append(f"j.plugin_name NOT IN ({_placeholders(blocked)})")
            params += sorted(blocked)
        now = now_sql(connection)
        order = ", ".join(f"j.{column}" for column in scheduling.QUEUE_ORDER)
        if connection.vendor == "sqlite":
            # Without statistics SQLite would rather read every queued job and sort them;
            # CROSS JOIN keeps the job table outside, walking the index in order.
            jobs, lock = f"{Job._meta.db_table} j INDEXED BY {FAIR_QUEUE_INDEX}", ""
        else:
            jobs, lock = f"{Job._meta.db_table} j", " FOR UPDATE OF t SKIP LOCKED"
        statement = (
            f"SELECT t.* FROM {jobs} CROSS JOIN {DBTaskResult._meta.db_table} t "
            f"WHERE t.id = j.task_id AND j.status = '{JobStatus.PENDING}' "
            f"AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= {now}) "
            f"AND t.status = '{TaskResultStatus.READY}' AND t.backend_name = %s "
            "AND (t.run_after = %s OR t.run_after <= %s) "
            + "".join(f"AND {condition} " for condition in conditions)
            + f"ORDER BY {order} LIMIT 1{lock}"
        )
        return next(iter(DBTaskResult.objects.raw(statement, params)), None)


def _placeholders(values: Any) -> str:
    return ", ".join(["%s"] * len(values))


def valid_concurrency(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return number


class Command(db_worker.Command):
    help = (
        "Run a database background worker that never orphans a job: Ctrl-C finishes the "
        "running job, a second Ctrl-C hands it back; it rides out database outages."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--concurrency",
            type=valid_concurrency,
            default=None,
            help="How many jobs the worker runs at once, each in a thread of its own "
            "(default: the WORKER_CONCURRENCY setting)",
        )
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
        if not secret_key_is_set():
            raise CommandError(MISSING_SECRET_KEY)
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
        concurrency = options.get("concurrency") or settings.WORKER_CONCURRENCY
        # N jobs of one plugin at once need N of its hosts ready, or they wait for starts.
        ProcessIsolation.shared().keep_hosts_per_plugin(concurrency)
        worker = GovernedWorker(
            concurrency=concurrency,
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
