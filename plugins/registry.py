"""The plugin registry: discovery, lookup and execution metrics.

Plugins come from the ``governed_plugins`` entry-point group (so an installed
package adds plugins with no code change here) and from the ``PLUGINS`` setting
(dotted paths chosen by the operator). A plugin that fails to import or breaks
the contract is kept as ``UNAVAILABLE`` with its reason: visible, never fatal.

Names that arrive in requests are only ever looked up in the registry, never
imported.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from django.conf import settings
from django.db import InterfaceError, InternalError, OperationalError, transaction
from django.utils.module_loading import import_string

from plugins.contract import Plugin, check_plugin_contract, plugin_label
from plugins.errors.exceptions import (
    PluginContractError,
    PluginNotFoundError,
    PluginUnavailableError,
)
from plugins.metrics import (
    METRICS_FAILURES,
    REFUSED_REQUESTS,
    UNKNOWN_PLUGIN_LABEL,
    observe_execution,
)
from plugins.models import PluginMetrics, PluginState
from plugins.runtime.limits import ExecutionLimits, Isolation
from plugins.runtime.process_pool import importable_problem
from plugins.runtime.provenance import code_of

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "governed_plugins"


@dataclass(frozen=True)
class PluginEntry:
    """What the registry knows about one plugin name."""

    name: str
    state: PluginState
    source: str
    plugin: Plugin | None = None
    reason: str = ""


class PluginRegistry:
    """Holds the plugins of one process. Safe to use from many threads."""

    def __init__(
        self, *, record_metrics: bool = True, defaults: ExecutionLimits | None = None
    ) -> None:
        self.record_metrics = record_metrics
        self.defaults = defaults if defaults is not None else ExecutionLimits()
        self._entries: dict[str, PluginEntry] = {}
        self._lock = threading.RLock()

    # Registration -----------------------------------------------------------------

    def register(self, plugin_class: object, *, source: str = "manual") -> Plugin:
        """Validate ``plugin_class`` against the contract, instantiate and register it.

        Raises PluginContractError for a malformed class, one a child process
        could not import when it must run in one, or a name that another class
        already holds. Registering the same class twice is a no-op.
        """
        cls = check_plugin_contract(plugin_class)
        if self.limits_for(cls).isolation is Isolation.PROCESS:
            problem = importable_problem(cls)
            if problem:
                raise PluginContractError(f"Plugin {cls.__qualname__} is invalid: {problem}")
        with self._lock:
            existing = self._entries.get(cls.name)
            if existing is not None and existing.plugin is not None:
                if type(existing.plugin) is cls:
                    return existing.plugin
                raise PluginContractError(
                    f"Plugin name {cls.name!r} is already registered by "
                    f"{type(existing.plugin).__module__}.{type(existing.plugin).__qualname__}"
                )
            plugin = cls()
            code_of(cls)  # its fingerprint is of the code just imported, not of a later upgrade
            self._entries[cls.name] = PluginEntry(
                name=cls.name, state=PluginState.AVAILABLE, source=source, plugin=plugin
            )
            return plugin

    def mark_unavailable(self, name: str, *, source: str, reason: str) -> None:
        """List ``name`` as UNAVAILABLE, unless a working plugin already holds it."""
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None and existing.plugin is not None:
                name = f"{name}@{source}"
            self._entries[name] = PluginEntry(
                name=name, state=PluginState.UNAVAILABLE, source=source, reason=reason
            )
        logger.warning("Plugin %s from %s is unavailable: %s", name, source, reason)

    def discover(
        self,
        *,
        entry_points_: Iterable[EntryPoint] | None = None,
        dotted_paths: Iterable[str] = (),
    ) -> None:
        """Load plugins from entry points and dotted paths; never raises for one plugin."""
        found = entry_points(group=ENTRY_POINT_GROUP) if entry_points_ is None else entry_points_
        for entry_point in found:
            source = f"entry point {entry_point.name} = {entry_point.value}"
            self._load(entry_point.name, source, entry_point.load)
        for path in dotted_paths:
            self._load(
                path.rsplit(".", 1)[-1],
                f"setting PLUGINS: {path}",
                functools.partial(import_string, path),
            )

    def _load(self, label: str, source: str, loader: Callable[[], object]) -> None:
        try:
            plugin_class = loader()
        except Exception as exc:
            self.mark_unavailable(
                label, source=source, reason=f"import failed: {type(exc).__name__}: {exc}"
            )
            return
        declared = getattr(plugin_class, "name", None)
        name = declared if isinstance(declared, str) and declared else label
        try:
            self.register(plugin_class, source=source)
        except PluginContractError as exc:
            self.mark_unavailable(name, source=source, reason=str(exc))
        except Exception as exc:
            self.mark_unavailable(
                name, source=source, reason=f"could not be created: {type(exc).__name__}: {exc}"
            )

    # Lookup -----------------------------------------------------------------------

    def get_entry(self, name: str) -> PluginEntry:
        """What is known about ``name``, available or not; raises PluginNotFound."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            label = plugin_label(name)
            raise PluginNotFoundError(
                f"No plugin named {label!r} is registered",
                plugin=label if isinstance(name, str) else None,
            )
        return entry

    def get_plugin(self, name: str) -> Plugin:
        """The registered plugin called ``name``; raises PluginNotFound/Unavailable."""
        return self.available(self.get_entry(name))

    @staticmethod
    def available(entry: PluginEntry) -> Plugin:
        """The entry's plugin; raises PluginUnavailable when it could not be loaded."""
        if entry.plugin is None:
            raise PluginUnavailableError(
                f"Plugin {entry.name!r} is unavailable: {entry.reason}",
                details={"reason": entry.reason},
                plugin=entry.name,
            )
        return entry.plugin

    def list_plugins(self) -> list[Plugin]:
        """The available plugins, sorted by name."""
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: e.name)
        return [entry.plugin for entry in entries if entry.plugin is not None]

    def get_status(self) -> list[PluginEntry]:
        """Every known plugin name, available or not, sorted by name."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.name)

    def limits_for(self, plugin: Plugin | type[Plugin]) -> ExecutionLimits:
        """Where and under which limits ``plugin`` runs: its own settings over the defaults."""
        return self.defaults.for_plugin(plugin)

    # Metrics ----------------------------------------------------------------------

    def count_refused_request(self, plugin_name: object, error_type: str) -> None:
        """Count a request refused before anything ran (no job, no persisted metrics).

        Names the registry does not know share one label, as in update_execution_metrics.
        """
        if self.record_metrics:
            label = plugin_name if self._is_known(plugin_name) else UNKNOWN_PLUGIN_LABEL
            REFUSED_REQUESTS.labels(plugin=label, error_type=error_type).inc()

    def _is_known(self, plugin_name: object) -> bool:
        return isinstance(plugin_name, str) and plugin_name in self._entries

    def update_execution_metrics(
        self,
        plugin_name: str,
        state: PluginState | str,
        elapsed_ms: float,
        had_error: bool,
        *,
        outcome: str | None = None,
    ) -> None:
        """Record one execution: Prometheus instruments and the persisted row.

        Executions of names the registry does not know are counted under one
        shared label and never get a database row, so garbage names sent by
        clients cannot grow the metrics without bound.
        """
        if not self.record_metrics:
            return
        known = self._is_known(plugin_name)
        observe_execution(
            plugin_name if known else UNKNOWN_PLUGIN_LABEL,
            outcome or ("error" if had_error else "success"),
            elapsed_ms,
        )
        if known:
            pending = _pending_metrics.get()
            if pending is not None:
                pending.add(plugin_name, str(state), elapsed_ms, had_error)
            else:
                PluginMetrics.objects.record_execution(
                    plugin_name, str(state), elapsed_ms, had_error
                )


class PendingMetrics:
    """Metric rows held back so the caller can write them in its own transaction.

    The rows stay pending until the caller says its transaction committed
    (:meth:`discard`): a commit that fails and is tried again writes them again,
    and only once it succeeds are they gone, so each execution counts once.
    """

    def __init__(self) -> None:
        self._rows: list[tuple[str, str, float, bool]] = []

    def add(self, plugin_name: str, state: str, elapsed_ms: float, had_error: bool) -> None:
        self._rows.append((plugin_name, state, elapsed_ms, had_error))

    def counted(self) -> str:
        """How the pending execution counts: ``"success"``, ``"error"``, or ``""`` if none is."""
        if not self._rows:
            return ""
        return "error" if self._rows[-1][3] else "success"

    def discard(self) -> None:
        """Forget what is pending: it was committed, or was no run worth keeping (refused input)."""
        self._rows = []

    def take(self) -> PendingMetrics:
        """Move what is pending to a new holder (which writes it later); this one is left empty."""
        taken = PendingMetrics()
        taken._rows, self._rows = self._rows, []
        return taken

    def write(self) -> None:
        """Write what is pending inside the caller's transaction, keeping it pending.

        Each row is written in a savepoint, so a failed metrics write cannot undo
        the caller's own work; it is logged and counted. A failure of the
        database itself (``OperationalError``, ``InterfaceError``) is raised: the
        caller's transaction fails with it and is tried again as a whole.
        """
        for row in self._rows:
            try:
                with transaction.atomic():
                    PluginMetrics.objects.record_execution(*row)
            except (OperationalError, InterfaceError, InternalError):
                raise  # the database's own failure: the caller's transaction is tried again
            except Exception:
                METRICS_FAILURES.inc()
                logger.exception("Recording metrics for plugin %r failed", row[0])

    def flush(self) -> None:
        """Write what is pending on its own and forget it. A failure is logged, never raised."""
        try:
            self.write()
        except Exception:
            METRICS_FAILURES.inc()
            logger.exception(
                "Recording metrics failed; %d executions went uncounted", len(self._rows)
            )
        self.discard()


_pending_metrics: contextvars.ContextVar[PendingMetrics | None] = contextvars.ContextVar(
    "pending_plugin_metrics", default=None
)


@contextmanager
def defer_metrics_persistence() -> Iterator[PendingMetrics]:
    """Hold back persisted metrics of executions in this block until ``flush()``.

    Lets a caller record an execution's outcome and its metrics in one commit.
    Anything not flushed by the caller is flushed when the block ends, so no
    execution goes uncounted.
    """
    pending = PendingMetrics()
    token = _pending_metrics.set(pending)
    try:
        yield pending
    finally:
        _pending_metrics.reset(token)
        pending.flush()


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry, discovered on first use."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                registry = PluginRegistry(
                    record_metrics=settings.PLUGIN_METRICS_ENABLED,
                    defaults=ExecutionLimits.from_settings(),
                )
                registry.discover(dotted_paths=settings.PLUGINS)
                _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry; the next get_registry() discovers again."""
    global _registry
    with _registry_lock:
        _registry = None
