"""The plugin registry: discovery and lookup.

Plugins come from the ``governed_plugins`` entry-point group (so an installed
package adds plugins with no code change here) and from the ``PLUGINS`` setting
(dotted paths chosen by the operator). A plugin that fails to import or breaks
the contract is kept as ``UNAVAILABLE`` with its reason: visible, never fatal.

Names that arrive in requests are only ever looked up in the registry, never
imported. ToolRunner reports each execution through
:meth:`PluginRegistry.update_execution_metrics`, which hands the numbers to the
recorder it is given (:mod:`plugins.metrics.recorder`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from django.conf import settings
from django.utils.module_loading import import_string

from plugins.contract import Plugin, check_plugin_contract, plugin_label
from plugins.errors.exceptions import (
    PluginContractError,
    PluginNotFoundError,
    PluginUnavailableError,
)
from plugins.metrics.recorder import ExecutionMetrics, MetricsRecorder
from plugins.models import PluginState
from plugins.runtime.isolation.process import importable_problem
from plugins.runtime.limits import ExecutionLimits, IsolationKind
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
        if self.limits_for(cls).isolation is IsolationKind.PROCESS:
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

    def get_status_of(self, name: str) -> PluginEntry | None:
        """What is known about ``name``, or None if it is not registered."""
        return self._entries.get(name)

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

    def is_registered(self, name: object) -> bool:
        """Whether ``name`` is a plugin name this registry knows, available or not."""
        return isinstance(name, str) and name in self._entries

    # Metrics ----------------------------------------------------------------------

    def update_execution_metrics(
        self,
        plugin_name: str,
        state: PluginState | str,
        elapsed_ms: float,
        had_error: bool,
        *,
        recorder: MetricsRecorder,
        outcome: str | None = None,
    ) -> None:
        """Hand one execution's numbers to ``recorder`` (nothing when metrics are off).

        Executions of names the registry does not know are counted under one
        shared label and never get a database row, so garbage names sent by
        clients cannot grow the metrics without bound.
        """
        if self.record_metrics:
            execution = ExecutionMetrics(
                plugin_name,
                str(state),
                elapsed_ms,
                had_error,
                outcome or ("error" if had_error else "success"),
            )
            recorder.record(execution, registered=self.is_registered(plugin_name))


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
