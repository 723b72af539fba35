"""``manage.py scan_violations [PATH ...]``: report governance violations.

The same command as ``python -m governance_scanner`` (shared in ``cli``), with
the project's folder as the default path. System checks are not run first, so
another folder can be scanned even while the project itself has a violation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance_scanner.cli import CommandFailed, add_arguments, run


class Command(BaseCommand):
    help = "Scan Python files for ungoverned plugin execution and other governance violations."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            code = run(
                options,
                stdout=self.stdout,
                stderr=self.stderr,
                default_path=Path(settings.BASE_DIR),
            )
        except CommandFailed as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if code:
            sys.exit(code)
