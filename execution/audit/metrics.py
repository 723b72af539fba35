"""Prometheus gauges of the audit chain, read from its row at scrape time.

Read at scrape time, like the persisted plugin metrics, so that every process
exports the same head whichever one sealed it. Prometheus keeping these series
is the copy of the head held outside the database: a rewrite of the whole chain
changes the hash at a seq that Prometheus has already seen.

The hash is exported as a number, its first 52 bits (exact in a float), not as
a label: a label that changes at every seal would make a new series every few
seconds. The whole hash is in the log line of each seal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("execution.audit")

HASH_PREFIX_HEX_DIGITS = 13  # 52 bits: a float64 holds them exactly


def hash_prefix(entry_hash: str) -> int:
    """The number ``governed_audit_head_hash_prefix`` exports for ``entry_hash``."""
    return int(entry_hash[:HASH_PREFIX_HEX_DIGITS] or "0", 16)


_GAUGES = {
    "governed_audit_head_seq": "Seq of the audit chain's last sealed entry.",
    "governed_audit_head_hash_prefix": (
        "First 52 bits of the audit chain head's hash, as an integer."
    ),
    "governed_audit_last_seal_timestamp_seconds": (
        "When the audit chain's head last moved (the database's clock), Unix time."
    ),
    "governed_audit_unsealed_entries": "Audit entries waiting to be sealed.",
}


class AuditChainCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The gauges' names, without reading the database (registration calls this)."""
        for name, documentation in _GAUGES.items():
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from execution.audit.models import AuditChain, AuditEntry

        try:
            chain = AuditChain.objects.filter(pk=AuditChain.SINGLETON_ID).first()
            waiting = AuditEntry.objects.filter(seq__isnull=True).count()
        except DatabaseError:
            logger.warning("The audit chain's head could not be read for /metrics")
            return
        head_seq, head_hash, sealed_at, unsealed = (
            GaugeMetricFamily(name, documentation) for name, documentation in _GAUGES.items()
        )
        head_seq.add_metric([], chain.head_seq if chain else 0)
        head_hash.add_metric([], hash_prefix(chain.head_hash) if chain else 0)
        if chain is not None and chain.sealed_at is not None:
            sealed_at.add_metric([], chain.sealed_at.timestamp())
            yield sealed_at
        unsealed.add_metric([], waiting)
        yield head_seq
        yield head_hash
        yield unsealed


_registered = False


def register_collector() -> None:
    """Export the gauges on /metrics, beside the persisted plugin metrics (idempotent).

    That registry is read at scrape time in every mode (multiprocess too), and
    /metrics still answers when the database does not.
    """
    global _registered
    if _registered:
        return
    from plugins.metrics.exposition import register_persisted_collector

    register_persisted_collector(AuditChainCollector())
    _registered = True
