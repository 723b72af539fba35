"""Finding plugin host processes from a test: by the plugin they run, under a process.

A host runs sandboxed and as another user when the tests run as root, so it
cannot write a pid file where a test could read it; its command line names its
plugin instead (``plugin=module.Class``), and /proc/PID/stat is readable by all.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def plugin_hosts(plugin: type, under: int | None = None) -> list[int]:
    """Live hosts of ``plugin`` (its class), below process ``under`` when given."""
    label = f"plugin={plugin.__module__}.{plugin.__qualname__}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if label not in arguments:
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            continue
        if under is None or _descends_from(pid, under):
            found.append(pid)
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (a host's group: it and what its plugin started)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return sorted(members)


def _descends_from(pid: int, ancestor: int) -> bool:
    current: int | None = pid
    while current and current != 1:
        current = _parent(current)
        if current == ancestor:
            return True
    return False


@contextlib.contextmanager
def watching(plugin: type, under: int, every_s: float = 0.01) -> Iterator[set[int]]:
    """While the block runs, collect the hosts of ``plugin`` below ``under`` and their groups.

    What a test asserts is gone afterwards: the hosts that ran, and every process
    their plugin started (each host leads its own process group).
    """
    seen: set[int] = set()
    done = threading.Event()

    def look() -> None:
        while True:
            for host in plugin_hosts(plugin, under):
                seen.add(host)
                seen.update(group_members(host))
            if done.wait(every_s):
                return

    watcher = threading.Thread(target=look, name="plugin-host-watcher", daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process ``pid`` disappears (or is a zombie) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
