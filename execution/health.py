"""Whether the database can be read *and written*, for ``/v1/health``.

Answering ``SELECT 1`` is not health: with a full disk or on a read-only replica
every read works and every job's outcome fails to commit. So the check commits a
small write (this process's heartbeat row) and, for SQLite, looks at the free
space of the file system that holds the database. And waiting jobs need a worker:
:func:`workers_status` says when no ``db_worker`` has beaten within ``WORKER_STALE_S``.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from execution.clock import database_now
from execution.models import ProcessHeartbeat
from execution.workers.selectors import workers_status

__all__ = ["database_status", "workers_status"]


def database_status(role: str = "web") -> str:
    """``"ok"``, or what is wrong: ``"error: <exception class>"`` or ``"disk full: ..."``."""
    try:
        with transaction.atomic():
            _beat(role)
    except DatabaseError as exc:
        return f"error: {type(exc).__name__}"
    return _free_space_problem() or "ok"


def _beat(role: str) -> None:
    name = f"{socket.gethostname()}:{os.getpid()}"
    now = database_now()
    if ProcessHeartbeat.objects.filter(name=name).update(seen_at=now, role=role):
        return
    try:
        with transaction.atomic():
            ProcessHeartbeat.objects.create(name=name, role=role, started_at=now, seen_at=now)
    except IntegrityError:  # another thread of this process wrote it first
        ProcessHeartbeat.objects.filter(name=name).update(seen_at=now, role=role)


def _free_space_problem() -> str:
    """For SQLite: ``"disk full: ..."`` below ``HEALTH_MIN_FREE_DISK_MB`` free, else empty."""
    if connection.vendor != "sqlite":
        return ""  # a server database's disk is its server's to watch; writes tell us enough
    folder = Path(str(connection.settings_dict["NAME"])).resolve().parent
    try:
        free_mb = shutil.disk_usage(folder).free / (1024 * 1024)
    except OSError:
        return ""
    if free_mb < settings.HEALTH_MIN_FREE_DISK_MB:
        return f"disk full: {free_mb:.1f} MB free where the database is"
    return ""
