"""Forget the live gauges of processes that have exited (PROMETHEUS_MULTIPROC_DIR).

    python deploy/prometheus_multiproc.py

prometheus-client keeps one file per process and metric kind. Counters and histograms
of a dead process must stay (they are part of the totals), but a ``live*`` gauge of a
dead process would be counted as if it still ran: ``mark_process_dead`` removes those.
gunicorn calls it for each worker that exits (deploy/gunicorn.conf.py, ``child_exit``);
a db_worker's unit runs this script when the worker stops, however it stopped
(deploy/systemd/governed-worker@.service, ``ExecStopPost``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from prometheus_client import multiprocess

LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_dead_processes(directory: Path) -> list[int]:
    """Mark every process with a live-gauge file in ``directory`` that no longer runs as dead."""
    pids = {
        int(match.group(1))
        for match in map(LIVE_GAUGE_FILE.match, os.listdir(directory))
        if match is not None
    }
    dead = sorted(pid for pid in pids if not is_running(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead


def main() -> int:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return 0  # single-process metrics, or not created yet: nothing to forget
    forget_dead_processes(Path(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
