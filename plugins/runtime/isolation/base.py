"""The isolation seam: what ToolRunner needs from wherever a plugin's code runs.

An isolation runs plugin-side code (a function of plugins/runtime/tool_runner.py,
given the plugin) under the plugin's limits and reports the JSON it returned and
what code ran. ToolRunner picks one by the plugin's :class:`IsolationKind`
(plugins/runtime/isolation/__init__.py) and knows nothing else about it: how a
child process is found, fed, killed or replaced, or how a thread is abandoned,
is the implementation's own business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from plugins.contract import Plugin
    from plugins.runtime.control import ExecutionControl
    from plugins.runtime.limits import ExecutionLimits
    from plugins.runtime.provenance import RanCode

PluginSide = Callable[..., bytes]
"""Code that runs where the plugin is isolated, called as ``function(plugin, *args)``.

One of plugins/runtime/plugin_side.py's (a host process knows them by name); it
returns bytes: only data crosses back, nothing the plugin made.
"""


class Isolation(Protocol):
    """Where plugin code runs: a child process, a pool thread, ..."""

    @classmethod
    def shared(cls) -> Isolation:
        """This process's instance, configured from settings and made on first use."""

    def call(
        self,
        function: PluginSide,
        plugin: Plugin,
        *args: Any,
        limits: ExecutionLimits,
        control: ExecutionControl | None = None,
    ) -> tuple[bytes, RanCode | None]:
        """Run ``function(plugin, *args)`` isolated, at most ``limits.timeout_s``.

        Returns what it returned and what code ran (None when the plugin could
        not be loaded). ``control`` is told when the execution starts and asked
        while it runs whether to stop it. Raises PluginTimeoutError, the
        control's stop error, ControlFailed, or the failure of ``function`` or of
        the isolation itself, with what ran attached (``exc.ran``) when known.
        """

    def warm_up(self, plugins: Iterable[tuple[Plugin, ExecutionLimits]]) -> None:
        """Get ready to run these plugins, in the background (start their processes)."""
