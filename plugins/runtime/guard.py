"""The runtime guard: a plugin's ``run`` only works inside ``ToolRunner.run``.

ToolRunner builds a fresh ``contextvars.Context`` per execution in which the
executing plugin is authorised, and runs the plugin inside that context (in
whichever thread enforces the time limit). Nothing outside that context, and no
other execution, sees the authorisation.
"""

from __future__ import annotations

import contextvars
from typing import Any

from plugins.errors.exceptions import UngovernedExecutionError

_authorised_plugin: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "governed_plugin", default=None
)


def governed_context(plugin: object) -> contextvars.Context:
    """A copy of the current context in which ``plugin`` may run, and nothing else."""
    token = _authorised_plugin.set(plugin)
    try:
        return contextvars.copy_context()
    finally:
        _authorised_plugin.reset(token)


def ensure_governed(plugin: Any) -> None:
    """Raise unless ``plugin`` is the plugin ToolRunner is executing in this context."""
    if _authorised_plugin.get() is not plugin:
        name = getattr(plugin, "name", type(plugin).__name__)
        raise UngovernedExecutionError(
            f"Plugin {name!r} was called directly. Plugins run only through "
            "ToolRunner.run(plugin_name, payload); in tests use plugins.testing.run_plugin()."
        )
