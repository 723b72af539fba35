"""Start-up of the audit trail in every process: called from ExecutionConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.core.signals import request_started

from execution.audit.metrics import register_collector
from execution.audit.signing import take_signing_key_from_environment


def on_ready() -> None:
    """Keep the signing key away from plugins, export the gauges, seal where requests are served.

    The key leaves ``os.environ`` here, before any plugin process can be started.
    The sealer starts on the first request (so commands such as migrate never
    start it), as the backstop of db_worker's.
    """
    take_signing_key_from_environment()
    register_collector()
    request_started.connect(_start_sealer, dispatch_uid="execution-audit-sealer")


def _start_sealer(**kwargs: Any) -> None:
    from execution.audit.sealer import AuditSealer

    AuditSealer.ensure_started(backstop=True)
