"""``manage.py scan_violations [PATH ...]``: report governance violations.

Exit codes: 0 no violations, 1 violations, 2 usage error or unreadable path.
System checks are not run first, so another folder can be scanned even while
the project itself has a violation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance_scanner.config import ConfigError, load_config
from governance_scanner.reporters import render, rule_help
from governance_scanner.rules import ALL_RULES, RULES_BY_CODE
from governance_scanner.scanner import Scanner, UsageError


def _code_list(value: str) -> list[str]:
    return [code for code in value.split(",") if code.strip()]


class Command(BaseCommand):
    help = "Scan Python files for ungoverned plugin execution and other governance violations."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="*", help="files or folders (default: the project)")
        parser.add_argument("--format", choices=["text", "json", "sarif", "github"], default="text")
        parser.add_argument("--output", help="write the report to this file")
        parser.add_argument("--select", type=_code_list, help="only these codes (comma-separated)")
        parser.add_argument("--ignore", type=_code_list, help="skip these codes (comma-separated)")
        parser.add_argument(
            "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes"
        )
        parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")
        parser.add_argument("--explain", metavar="CODE", help="explain a rule and exit")
        parser.add_argument("--config", help="path to a pyproject.toml")
        parser.add_argument("--no-config", action="store_true", help="ignore configuration files")
        parser.add_argument("--statistics", action="store_true", help="count violations per rule")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list_rules"]:
            for rule in ALL_RULES:
                self.stdout.write(f"{rule.code}  {rule.name:36} {rule.message}")
            return
        if options["explain"]:
            code = options["explain"].strip().upper()
            if code not in RULES_BY_CODE:
                raise CommandError(f"Unknown rule {code!r}; see --list-rules", returncode=2)
            self.stdout.write(f"{code} {RULES_BY_CODE[code].name}\n\n{rule_help(code)}")
            return
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1", returncode=2)
        if options["config"] and options["no_config"]:
            raise CommandError("--config and --no-config exclude each other", returncode=2)

        cwd = Path.cwd()
        try:
            config = self._config(options, cwd)
            paths = [Path(p) for p in options["paths"]] or [Path(settings.BASE_DIR)]
            result = Scanner(config, cwd=cwd, jobs=options["jobs"]).scan(paths)
        except (ConfigError, UsageError) as exc:
            raise CommandError(str(exc), returncode=2) from exc

        report = render(result, options["format"], statistics=options["statistics"])
        if options["output"]:
            try:
                Path(options["output"]).write_text(report + "\n", encoding="utf-8")
            except OSError as exc:
                raise CommandError(
                    f"Cannot write {options['output']}: {exc}", returncode=2
                ) from exc
        elif report:
            self.stdout.write(report)
        for problem in result.unreadable:
            self.stderr.write(f"unreadable: {problem}")
        if result.exit_code:
            sys.exit(result.exit_code)

    def _config(self, options: dict[str, Any], cwd: Path) -> Any:
        from governance_scanner.config import ScannerConfig

        if options["no_config"]:
            config = ScannerConfig(root=cwd)
        else:
            explicit = Path(options["config"]) if options["config"] else None
            config = load_config(explicit, cwd=cwd)
        return config.with_overrides(
            select=tuple(options["select"]) if options["select"] is not None else None,
            ignore=tuple(options["ignore"]) if options["ignore"] is not None else None,
        )
