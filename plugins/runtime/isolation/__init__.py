"""Isolation: where a plugin's own code runs, and each kind's implementation.

* base.py       the :class:`Isolation` protocol ToolRunner relies on
* process.py    process isolation, the parent's side: a pool of child processes
* child.py      what runs in such a child
* bootstrap.py  what the forkserver the children are forked from imports first
* thread.py     thread isolation, for trusted plugins
* artifacts.py  the files a plugin returns, from where it ran to the server

A new kind is a module here, a value of :class:`IsolationKind` and a line below.
"""

from __future__ import annotations

from plugins.runtime.isolation.base import Isolation
from plugins.runtime.isolation.process import ProcessIsolation
from plugins.runtime.isolation.thread import ThreadIsolation
from plugins.runtime.limits import IsolationKind

ISOLATIONS: dict[IsolationKind, type[Isolation]] = {
    IsolationKind.PROCESS: ProcessIsolation,
    IsolationKind.THREAD: ThreadIsolation,
}
"""The implementation of each kind; ToolRunner uses each one's shared instance."""
