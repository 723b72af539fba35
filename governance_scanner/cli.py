"""The command line, shared by ``python -m governance_scanner`` and ``manage.py scan_violations``.

Options, configuration, output and exit codes are the same for both: 0 no
violations, 1 violations, 2 usage error or unreadable path. This module and what
it imports need only the standard library, so the command starts without Django.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from governance_scanner.cache import CACHE_DIR_ENV, CACHE_DIR_NAME, cache_folder
from governance_scanner.config import ConfigError, ScannerConfig, load_config
from governance_scanner.reporters import render, rule_help
from governance_scanner.rules import RULES, RULES_BY_CODE
from governance_scanner.scanner import Scanner, UsageError

FORMATS = ("text", "json", "sarif", "github")


class Writer(Protocol):
    def write(self, text: str, /) -> object: ...


class CommandFailed(Exception):
    """A usage error or an unwritable output: exit code 2."""


def _code_list(value: str) -> list[str]:
    return [code for code in value.split(",") if code.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", help="files or folders (default: the configuration's folder)"
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--output", help="write the report to this file")
    parser.add_argument("--select", type=_code_list, help="only these codes (comma-separated)")
    parser.add_argument("--ignore", type=_code_list, help="skip these codes (comma-separated)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    parser.add_argument("--explain", metavar="CODE", help="explain a rule and exit")
    parser.add_argument("--config", help="path to a pyproject.toml")
    parser.add_argument("--no-config", action="store_true", help="ignore configuration files")
    parser.add_argument("--statistics", action="store_true", help="count violations per rule")
    parser.add_argument(
        "--no-cache", action="store_true", help="analyse every file anew; read and write no cache"
    )
    parser.add_argument(
        "--cache-dir",
        help=f"where the cache lives (default: ${CACHE_DIR_ENV}, else {CACHE_DIR_NAME}/ "
        "beside the configuration)",
    )


def run(
    options: dict[str, Any], *, stdout: Writer, stderr: Writer, default_path: Path | None = None
) -> int:
    """Carry out parsed ``options``; returns the exit code, raises CommandFailed for usage."""
    if options["list_rules"]:
        for rule in RULES:
            stdout.write(f"{rule.code}  {rule.name:36} {rule.message}\n")
        return 0
    if options["explain"]:
        code = options["explain"].strip().upper()
        if code not in RULES_BY_CODE:
            raise CommandFailed(f"Unknown rule {code!r}; see --list-rules")
        stdout.write(f"{code} {RULES_BY_CODE[code].name}\n\n{rule_help(code)}\n")
        return 0
    if options["jobs"] < 1:
        raise CommandFailed("--jobs must be at least 1")
    if options["config"] and options["no_config"]:
        raise CommandFailed("--config and --no-config exclude each other")
    if options["cache_dir"] and options["no_cache"]:
        raise CommandFailed("--cache-dir and --no-cache exclude each other")

    cwd = Path.cwd()
    try:
        config = _config(options, cwd)
        paths = [Path(p) for p in options["paths"]] or [default_path or config.root]
        cache_dir = None if options["no_cache"] else cache_folder(config.root, options["cache_dir"])
        with _without_cyclic_gc():
            scanner = Scanner(config, cwd=cwd, jobs=options["jobs"], cache_dir=cache_dir)
            result = scanner.scan(paths)
    except (ConfigError, UsageError) as exc:
        raise CommandFailed(str(exc)) from exc

    report = render(result, options["format"], statistics=options["statistics"])
    if options["output"]:
        try:
            Path(options["output"]).write_text(report + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandFailed(f"Cannot write {options['output']}: {exc}") from exc
    elif report:
        stdout.write(report + "\n")
    for problem in result.unreadable:
        stderr.write(f"unreadable: {problem}\n")
    return result.exit_code


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Parsing allocates millions of AST nodes, which reference counting frees as each
    file is done; the cyclic collector would only traverse them again (about 15% of
    a scan). It is back on afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _config(options: dict[str, Any], cwd: Path) -> ScannerConfig:
    if options["no_config"]:
        config = ScannerConfig(root=cwd)
    else:
        explicit = Path(options["config"]) if options["config"] else None
        config = load_config(explicit, cwd=cwd)
    return config.with_overrides(
        select=tuple(options["select"]) if options["select"] is not None else None,
        ignore=tuple(options["ignore"]) if options["ignore"] is not None else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m governance_scanner",
        description="Scan Python files for ungoverned plugin execution and other "
        "governance violations.",
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        return run(options, stdout=sys.stdout, stderr=sys.stderr)
    except CommandFailed as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
