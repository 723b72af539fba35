"""Recorders: where ToolRunner's registry hands the numbers of each execution.

A recorder is passed down explicitly, never found in a hidden place:

* :class:`ImmediateRecorder` (the default) writes the persisted row at once;
* :class:`DeferredRecorder` holds it back so the caller writes it in its own
  transaction, together with what it records about the execution (a job's
  outcome), once.

Both update this process's Prometheus instruments at once: they are not part
of any transaction.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from django.db import InterfaceError, InternalError, OperationalError, transaction

from plugins.metrics.instruments import METRICS_FAILURES, metrics_label, observe_execution
from plugins.models import PluginMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecutionMetrics:
    """The numbers of one execution, as ToolRunner measured them."""

    plugin_name: str
    state: str
    elapsed_ms: float
    had_error: bool
    outcome: str  # "success" or the error type: the instruments' label


def _write_row(execution: ExecutionMetrics) -> None:
    PluginMetrics.objects.record_execution(
        execution.plugin_name, execution.state, execution.elapsed_ms, execution.had_error
    )


class MetricsRecorder(ABC):
    """Records executions: the instruments now, the persisted row as the subclass decides."""

    def record(self, execution: ExecutionMetrics, *, registered: bool) -> None:
        """Record ``execution``; only a plugin the registry knows gets a database row.

        So names sent by clients cannot grow the persisted metrics without bound.
        """
        observe_execution(
            metrics_label(execution.plugin_name, registered=registered),
            execution.outcome,
            execution.elapsed_ms,
        )
        if registered:
            self._persist(execution)

    @abstractmethod
    def _persist(self, execution: ExecutionMetrics) -> None: ...


class ImmediateRecorder(MetricsRecorder):
    """Writes each row at once, in the caller's transaction if there is one."""

    def _persist(self, execution: ExecutionMetrics) -> None:
        _write_row(execution)


IMMEDIATE_RECORDER = ImmediateRecorder()
"""The recorder of executions run outside a job's transaction (it keeps no state)."""


class DeferredRecorder(MetricsRecorder):
    """Rows held back so the caller can write them in its own transaction.

    The rows stay pending until the caller says its transaction committed
    (:meth:`discard`): a commit that fails and is tried again writes them again,
    and only once it succeeds are they gone, so each execution counts once.
    Used as a context manager, whatever is still pending when the block ends is
    written on its own (:meth:`flush`), so no execution goes uncounted.
    """

    def __init__(self) -> None:
        self._pending: list[ExecutionMetrics] = []

    def __enter__(self) -> DeferredRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.flush()

    def _persist(self, execution: ExecutionMetrics) -> None:
        self._pending.append(execution)

    def counted(self) -> str:
        """How the pending execution counts: ``"success"``, ``"error"``, or ``""`` if none is."""
        if not self._pending:
            return ""
        return "error" if self._pending[-1].had_error else "success"

    def discard(self) -> None:
        """Forget what is pending: it was committed, or was no run worth keeping (refused input)."""
        self._pending = []

    def take(self) -> DeferredRecorder:
        """Move what is pending to a new recorder, which writes it later; this one is left empty."""
        taken = DeferredRecorder()
        taken._pending, self._pending = self._pending, []
        return taken

    def write(self) -> None:
        """Write what is pending inside the caller's transaction, keeping it pending.

        Each row is written in a savepoint, so a failed metrics write cannot undo
        the caller's own work; it is logged and counted. A failure of the
        database itself (``OperationalError``, ``InterfaceError``, ``InternalError``)
        is raised: the caller's transaction fails with it and is tried again as a whole.
        """
        for execution in self._pending:
            try:
                with transaction.atomic():
                    _write_row(execution)
            except (OperationalError, InterfaceError, InternalError):
                raise  # the database's own failure: the caller's transaction is tried again
            except Exception:
                METRICS_FAILURES.inc()
                logger.exception("Recording metrics for plugin %r failed", execution.plugin_name)

    def flush(self) -> None:
        """Write what is pending on its own and forget it. A failure is logged, never raised."""
        try:
            self.write()
        except Exception:
            METRICS_FAILURES.inc()
            logger.exception(
                "Recording metrics failed; %d executions went uncounted", len(self._pending)
            )
        self.discard()
