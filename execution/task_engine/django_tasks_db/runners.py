"""TaskRunners: the threads of one ``db_worker`` that run its tasks, up to N at once.

The worker's loop (the main thread, which also gets the signals) takes a slot,
then claims a task, then hands it to a free runner: a task is claimed only when
a thread is free to run it at once, so no claimed task waits in this process
(where a kill -9 would strand it until its lease ends). Each runner thread has
its own database connections (Django's are per thread) and closes them when it
ends, and between tasks as a request would (``close_old_connections``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django_tasks_db.models import DBTaskResult

logger = logging.getLogger("django_tasks_db")

_STOP = None  # what a runner finds on its queue when it should end


class TaskRunners:
    """``size`` threads, each running one task at a time with ``run``."""

    def __init__(self, size: int, run: Callable[[DBTaskResult[Any, Any]], None]) -> None:
        if size < 1:
            raise ValueError("a worker runs at least one task at a time")
        self.size = size
        self._run = run
        self._busy = 0  # slots taken: a task claimed or about to be, or running
        self._changed = threading.Condition()
        self._tasks: queue.SimpleQueue[DBTaskResult[Any, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (once per worker process, not again after an outage)."""
        if self._threads:
            return
        for number in range(1, self.size + 1):
            # Daemon threads: a third signal exits at once, whatever they run.
            thread = threading.Thread(target=self._serve, name=f"job-runner-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def busy(self) -> int:
        return self._busy

    def take_slot(self, timeout_s: float) -> bool:
        """Reserve a runner for the next task; False if none got free within ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._busy < self.size, timeout_s):
                return False
            self._busy += 1
            return True

    def give_back_slot(self) -> None:
        """The slot taken found no task to run (or claiming it failed)."""
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()

    def run(self, task_result: DBTaskResult[Any, Any]) -> None:
        """Run a claimed task on a free runner; the caller holds a slot for it."""
        self._tasks.put(task_result)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no task runs (None: however long it takes); whether none does."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout_s)

    def finish(self) -> None:
        """Let the running tasks finish, then end the threads.

        Waits in short steps, so that the signals reach the worker meanwhile (a
        second one hands the running jobs back, and they end sooner).
        """
        while not self.wait_idle(timeout_s=0.5):
            pass
        for _ in self._threads:
            self._tasks.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _serve(self) -> None:
        try:
            while (task_result := self._tasks.get()) is not _STOP:
                try:
                    self._run(task_result)
                except DatabaseError as exc:
                    # The database went away while the task ended: its job is leased, and
                    # lease recovery ends it if this worker cannot. The loop reports outages.
                    logger.warning("Task id=%s not recorded as ended: %s", task_result.id, exc)
                except Exception:  # one task must never stop the runner of the next
                    logger.exception("Task id=%s failed in its runner", task_result.id)
                finally:
                    with contextlib.suppress(DatabaseError):
                        close_old_connections()
                    self.give_back_slot()
        finally:
            connections.close_all()
