"""The runtime guard: a plugin's ``run`` only works inside ``ToolRunner.run``.

ToolRunner authorises exactly one plugin instance for the duration of one
execution, in the context (thread or child process) where that execution runs.
Nothing outside that context, and no other execution, sees the authorisation:
a context variable does not leak to other threads, and a child process only
ever authorises the plugin it is running.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from plugins.errors.exceptions import UngovernedExecutionError

_authorised_plugin: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "governed_plugin", default=None
)


@contextmanager
def authorised(plugin: object) -> Iterator[None]:
    """Let ``plugin`` (and nothing else) run in this context until the block ends."""
    token = _authorised_plugin.set(plugin)
    try:
        yield
    finally:
        _authorised_plugin.reset(token)


def running_plugin() -> object | None:
    """The plugin whose ``run`` ToolRunner executes in this context, if any."""
    return _authorised_plugin.get()


def ensure_governed(plugin: Any) -> None:
    """Raise unless ``plugin`` is the plugin ToolRunner is executing in this context."""
    if _authorised_plugin.get() is not plugin:
        name = getattr(plugin, "name", type(plugin).__name__)
        raise UngovernedExecutionError(
            f"Plugin {name!r} was called directly. Plugins run only through "
            "ToolRunner.run(plugin_name, payload); in tests use plugins.testing.run_plugin()."
        )
