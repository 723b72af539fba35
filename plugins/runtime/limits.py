"""How one plugin execution is contained: where it runs and what it may use.

Each limit is a plugin class attribute with a project-wide default from settings;
the registry combines the two into one :class:`ExecutionLimits` per plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class IsolationKind(StrEnum):
    """Where a plugin runs; each kind has its implementation in plugins/runtime/isolation/."""

    PROCESS = "process"
    """In a sandboxed host process of its own: confined by the kernel, killed past its time
    limit, memory capped, crashes contained."""
    THREAD = "thread"
    """In a pool thread of the calling process: cheaper, for trusted plugins only."""


@dataclass(frozen=True)
class ExecutionLimits:
    isolation: IsolationKind = IsolationKind.PROCESS
    timeout_s: float = 30.0
    """Wall clock from the call; past it the caller gets PluginTimeout and the child is killed."""
    max_memory_mb: int | None = 1024
    """Address space a process-isolated execution may add to its child; None: unlimited."""
    max_result_bytes: int = 1024 * 1024
    """Largest result, measured as its JSON encoding."""
    max_artifact_bytes: int = 50 * 1024 * 1024
    """Largest artifact (a file returned with the result): the plugin's ``max_artifact_bytes``,
    at most the operator's ARTIFACT_MAX_BYTES."""
    max_artifacts_total_bytes: int = 200 * 1024 * 1024
    """Largest sum of one execution's artifacts (the operator's ARTIFACT_MAX_TOTAL_BYTES)."""
    network: bool = False
    """May open TCP connections: the plugin declares ``network = True`` and the operator
    names it in ``network_allowed``; both, or its sandbox has no network."""
    fresh_process: bool = False
    """A new host process for every execution (the plugin's ``fresh_process``)."""
    read_paths: tuple[str, ...] = ()
    """Files and trees it may read besides the interpreter and packages (``read_paths``)."""
    network_allowed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """The operator's PLUGIN_NETWORK_ALLOWED: the plugins that may have ``network``."""
    read_paths_allowed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """The operator's PLUGIN_READ_PATHS_ALLOWED: the plugins whose ``read_paths`` count."""
    thread_allowed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """The operator's PLUGIN_THREAD_ALLOWED: the plugins that may leave the sandbox for a thread."""
    artifact_bytes_ceiling: int = field(default=50 * 1024 * 1024, compare=False, repr=False)
    """The operator's ARTIFACT_MAX_BYTES: no plugin's ``max_artifact_bytes`` goes beyond it."""

    @classmethod
    def from_settings(cls) -> ExecutionLimits:
        from django.conf import settings

        return cls(
            isolation=IsolationKind(settings.PLUGIN_ISOLATION),
            timeout_s=settings.PLUGIN_DEFAULT_TIMEOUT_S,
            max_memory_mb=settings.PLUGIN_DEFAULT_MAX_MEMORY_MB,
            max_result_bytes=settings.PLUGIN_MAX_RESULT_BYTES,
            max_artifact_bytes=settings.ARTIFACT_MAX_BYTES,
            max_artifacts_total_bytes=settings.ARTIFACT_MAX_TOTAL_BYTES,
            artifact_bytes_ceiling=settings.ARTIFACT_MAX_BYTES,
            network_allowed=frozenset(settings.PLUGIN_NETWORK_ALLOWED),
            read_paths_allowed=frozenset(settings.PLUGIN_READ_PATHS_ALLOWED),
            thread_allowed=frozenset(settings.PLUGIN_THREAD_ALLOWED),
        )

    def for_plugin(self, plugin: Any) -> ExecutionLimits:
        """These defaults, overridden by what the plugin class sets and the operator allows.

        A plugin may ask for a thread (out of its sandbox), the network and paths to
        read; it gets each only if the operator named it in the matching setting.
        """
        overrides: dict[str, Any] = {}
        name = getattr(plugin, "name", None)
        if getattr(plugin, "isolation", None) is not None:
            asked = IsolationKind(plugin.isolation)
            if asked is not IsolationKind.THREAD or name in self.thread_allowed:
                overrides["isolation"] = asked
        if getattr(plugin, "timeout_s", None) is not None:
            overrides["timeout_s"] = float(plugin.timeout_s)
        if getattr(plugin, "max_memory_mb", None) is not None:
            overrides["max_memory_mb"] = int(plugin.max_memory_mb)
        artifact_bytes = getattr(plugin, "max_artifact_bytes", None)
        if artifact_bytes is not None:  # the smaller of the plugin's and the operator's
            artifact_bytes = min(int(artifact_bytes), self.artifact_bytes_ceiling)
            if artifact_bytes != self.max_artifact_bytes:
                overrides["max_artifact_bytes"] = artifact_bytes
        if getattr(plugin, "network", False):
            overrides["network"] = name in self.network_allowed
        if getattr(plugin, "fresh_process", False):
            overrides["fresh_process"] = True
        if getattr(plugin, "read_paths", ()) and name in self.read_paths_allowed:
            overrides["read_paths"] = tuple(str(path) for path in plugin.read_paths)
        return replace(self, **overrides) if overrides else self
