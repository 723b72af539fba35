"""Every policy decision on the record: counted, logged with the request id, audited.

One function for every kind of decision, so that grants, throttles and quotas
report alike. An allowed run is counted only: its job's own ``job.submitted``
entry is its record. A refusal is also logged and gets a ``policy.*`` audit
entry; during a database outage the entry is lost and only logged, so that the
refusal still reaches the client.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from api.request_id import current_request_id
from execution.audit.events import AuditEvent
from execution.audit.recorder import record
from plugins.contract import plugin_label
from plugins.metrics.instruments import count_policy_decision, metrics_label
from plugins.registry import get_registry

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger("execution.policy")


class Decision(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    THROTTLED = "throttled"
    OVER_QUOTA = "over_quota"


_AUDIT_EVENTS = {
    Decision.DENIED: AuditEvent.POLICY_DENIED,
    Decision.THROTTLED: AuditEvent.POLICY_THROTTLED,
    Decision.OVER_QUOTA: AuditEvent.POLICY_OVER_QUOTA,
}


def record_decision(
    decision: Decision,
    *,
    reason: str,
    plugin_name: object = "",
    user: AbstractBaseUser | None = None,
    error_type: str = "",
    details: dict[str, Any] | None = None,
    on_record: bool = True,
) -> None:
    """Count ``decision`` by reason and plugin; a refusal is also logged and audited.

    ``reason``: a short stable word for the metric's label and the log (``grant``,
    ``no_grant``, ``burst``, ``active_jobs``, ...). ``plugin_name`` may be anything
    a client sent: names the registry does not know share one label. ``on_record``
    False: counted only, neither logged nor audited (a refusal repeating one that
    was put on the record moments ago: a flood must not flood the audit trail).
    """
    registry = get_registry()
    name = plugin_label(plugin_name) if plugin_name else ""
    if registry.record_metrics:
        registered = bool(name) and registry.is_registered(name)
        count_policy_decision(str(decision), reason, metrics_label(name, registered=registered))
    if decision is Decision.ALLOWED or not on_record:
        return
    actor = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    logger.warning(
        "Policy %s (%s): plugin=%s user=%s request_id=%s",
        decision,
        reason,
        name or "-",
        actor,
        current_request_id() or "-",
    )
    try:
        record(
            _AUDIT_EVENTS[decision],
            actor=user if user is not None and user.is_authenticated else actor,
            plugin_name=name,
            error_type=error_type,
            details={"reason": reason, "request_id": current_request_id(), **(details or {})},
        )
    except DatabaseError:
        logger.warning(
            "A policy decision (%s, %s) could not be put on the audit trail", decision, reason
        )
