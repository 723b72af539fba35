"""``manage.py seal_audit``: seal the waiting audit entries now, and print the head."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from execution.audit.chain import SigningKeyMismatch, seal


class Command(BaseCommand):
    help = "Seal every audit entry waiting to be sealed (the sealers do it every few seconds)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = seal()
        except SigningKeyMismatch as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Sealed {result.sealed} entries; head seq={result.head_seq} hash={result.head_hash}"
        )
