"""AuditSealer: a daemon thread that seals waiting entries every ``AUDIT_SEAL_INTERVAL_S``.

One per process that serves requests or runs jobs, like the LeaseMonitor, so
sealing needs no operator and no extra process; the compare-and-swap on the
chain's head makes several of them safe. Each look at the queue is one indexed
``SELECT ... LIMIT 1`` outside any transaction, so idle sealers cost nothing
and take no lock. A database outage is logged once and waited out.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from execution.audit.chain import SigningKeyMismatch, seal

logger = logging.getLogger("execution.audit")


class AuditSealer:
    _lock = threading.Lock()
    _started_in: int | None = None

    @classmethod
    def ensure_started(cls) -> None:
        """Start this process's sealer unless it runs already, or the audit or sealing is off."""
        interval = settings.AUDIT_SEAL_INTERVAL_S
        if not settings.AUDIT_ENABLED or interval <= 0 or cls._started_in == os.getpid():
            return
        with cls._lock:
            if cls._started_in == os.getpid():
                return
            cls._started_in = os.getpid()
        thread = threading.Thread(
            target=cls._run, args=(interval,), name="audit-sealer", daemon=True
        )
        thread.start()

    @staticmethod
    def _run(interval: float) -> None:
        problem: str | None = None
        while True:
            time.sleep(interval)
            try:
                seal()
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
