"""AuditSealer: a daemon thread that seals waiting entries every ``AUDIT_SEAL_INTERVAL_S``.

One per process that serves requests or runs jobs, like the LeaseMonitor, so
sealing needs no operator and no extra process; the compare-and-swap on the
chain's head makes several of them safe. Each look at the queue is one indexed
``SELECT ... LIMIT 1`` outside any transaction, so idle sealers cost nothing
and take no lock. A database outage is logged once and waited out.

Workers seal; web processes are the backstop. A sealer thread in a web process
shares Python's lock with the request it serves, and each switch to it can make
that request wait up to 5 ms, so there it seals only when no process has sealed
for ``BACKSTOP_INTERVALS`` intervals (no worker runs, or none keeps up).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models.functions import Now

from execution.audit.chain import SigningKeyMismatch, seal
from execution.audit.models import AuditChain

logger = logging.getLogger("execution.audit")

# Small batches with a pause between them: the write lock is held ~2 ms at a time,
# and the requests' threads of this process get Python's lock back between batches.
BATCH_SIZE = 200
PAUSE_S = 0.002
BACKSTOP_INTERVALS = 10


class AuditSealer:
    _lock = threading.Lock()
    _started_in: int | None = None

    @classmethod
    def ensure_started(cls, *, backstop: bool = False) -> None:
        """Start this process's sealer unless it runs already, or the audit or sealing is off.

        ``backstop``: seal only when nobody else has lately (web processes).
        """
        interval = settings.AUDIT_SEAL_INTERVAL_S
        if not settings.AUDIT_ENABLED or interval <= 0 or cls._started_in == os.getpid():
            return
        with cls._lock:
            if cls._started_in == os.getpid():
                return
            cls._started_in = os.getpid()
        thread = threading.Thread(
            target=cls._run,
            args=(interval, interval * BACKSTOP_INTERVALS if backstop else interval / 2),
            name="audit-sealer",
            daemon=True,
        )
        thread.start()

    @staticmethod
    def _run(interval: float, unless_sealed_within: float) -> None:
        problem: str | None = None
        while True:
            time.sleep(interval * random.uniform(0.8, 1.2))  # processes drift apart
            try:
                if not _sealed_within(unless_sealed_within):
                    seal(batch_size=BATCH_SIZE, pause_s=PAUSE_S)
                problem = None
            except DatabaseError:
                if problem != "database":
                    logger.warning("Audit entries cannot be sealed: the database is unavailable")
                problem = "database"
            except SigningKeyMismatch as exc:
                if problem != "key":
                    logger.error("%s", exc)
                problem = "key"
            except Exception:
                logger.exception("Sealing audit entries failed")
            finally:
                close_old_connections()
                connection.close()


def _sealed_within(seconds: float) -> bool:
    """Whether some process sealed within the last ``seconds``: then it keeps up.

    Every web process and worker runs a sealer, and only one of them can win each
    seal; the others would read and hash the same batch for nothing.
    """
    recent = Now() - timedelta(seconds=seconds)
    return AuditChain.objects.filter(sealed_at__gte=recent).exists()
