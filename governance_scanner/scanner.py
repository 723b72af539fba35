"""Scan Python files for governance violations without importing or running them.

A scan analyses its *index*: the files it was given and, for a project that opted
in (a ``[tool.governance_scanner]`` table), every file of the project, so that a
scan of one file knows every plugin class, base class and re-export a scan of the
whole project knows, and reports that file exactly as the whole scan would.

Each file is read and parsed at most once, in a worker process when ``jobs > 1``,
and not at all when the cache (:mod:`governance_scanner.cache`) holds an analysis
of the same content. File rules run there; a GOV001 finding that depends on
whether some class derives from a plugin base comes back *pending*. The main
process then joins the class hierarchies of every indexed file, keeps the pending
findings (of the files asked for) whose class is a plugin, runs the project rules
once (the runner contract, GOV002-GOV004) and applies configuration and
suppressions.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governance_scanner.cache import ScanCache, content_digest
from governance_scanner.checker import Checker, FileOptions, SourceFile
from governance_scanner.config import ConfigError, ScannerConfig
from governance_scanner.project import Project, module_names
from governance_scanner.rules import FILE_RULES, PROJECT_RULES, RULES_BY_CODE
from governance_scanner.rules.base import Finding, PendingFinding
from governance_scanner.suppressions import Suppression, parse_suppressions

KNOWN_CODES = frozenset(RULES_BY_CODE)
PARALLEL_THRESHOLD = 64  # below this, worker start-up costs more than it saves
# fork starts workers fastest; where it is missing (or unsafe), spawn works too.
DEFAULT_START_METHOD = "fork" if sys.platform == "linux" else "spawn"


class UsageError(Exception):
    """Bad arguments or an unreadable path: exit code 2."""


@dataclass(frozen=True)
class FileTask:
    path: str
    display: str
    module: str
    package: str
    is_tool_runner: bool
    is_state_machine: bool
    is_runner_caller: bool

    @property
    def place(self) -> str:
        """Where the file stands in the project, as far as its analysis depends on it."""
        roles = f"{self.is_tool_runner:d}{self.is_state_machine:d}{self.is_runner_caller:d}"
        return f"{self.module}:{self.package}:{roles}"


@dataclass
class FileReport:
    display: str
    findings: list[Finding] = field(default_factory=list)
    pending: list[PendingFinding] = field(default_factory=list)
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    suppressions: dict[int, Suppression] = field(default_factory=dict)
    unreadable: str | None = None
    digest: str = ""  # of the content analysed, when the scan caches

    def to_cache(self) -> list[Any]:
        """What the cache stores: everything but the path, which depends on the cwd."""
        return [
            [[f.line, f.column, f.rule, f.message] for f in self.findings],
            [
                [p.finding.line, p.finding.column, p.finding.rule, p.finding.message, p.class_name]
                for p in self.pending
            ],
            self.classes,
            self.aliases,
            [[line, sorted(s.codes), s.reason] for line, s in self.suppressions.items()],
        ]

    @classmethod
    def from_cache(cls, display: str, value: list[Any]) -> FileReport | None:
        """The report stored by :meth:`to_cache`; None if the entry is malformed."""
        try:
            findings, pending, classes, aliases, suppressions = value
            report = cls(
                display=display,
                findings=[Finding(display, *_finding_fields(*item)) for item in findings],
                pending=[
                    PendingFinding(Finding(display, *_finding_fields(*item[:4])), _text(item[4]))
                    for item in pending
                ],
                classes={
                    _text(name): tuple(_text(base) for base in bases)
                    for name, bases in classes.items()
                },
                aliases={_text(name): _text(target) for name, target in aliases.items()},
                suppressions={
                    _number(line): Suppression(frozenset(_text(c) for c in codes), _text(reason))
                    for line, codes, reason in suppressions
                },
            )
        except (TypeError, ValueError, AttributeError):
            return None
        return report


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _number(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(value)
    return value


def _finding_fields(
    line: object, column: object, rule: object, message: object
) -> tuple[int, int, str, str]:
    return _number(line), _number(column), _text(rule), _text(message)


@dataclass
class SuppressedFinding:
    finding: Finding
    reason: str


@dataclass
class ScanResult:
    files_scanned: int
    violations: list[Finding]
    suppressed: list[SuppressedFinding]
    unreadable: list[str]

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if self.violations else 0


# Discovery ------------------------------------------------------------------------


def _compile(patterns: Iterable[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """Glob patterns as two regexes: for single names, and for paths with a "/"."""
    names = [fnmatch.translate(p.rstrip("/")) for p in patterns if "/" not in p.rstrip("/")]
    paths = [
        fnmatch.translate(p.rstrip("/")) + "|" + fnmatch.translate(p.rstrip("/") + "/*")
        for p in patterns
        if "/" in p.rstrip("/")
    ]
    return (
        re.compile("|".join(names)) if names else None,
        re.compile("|".join(paths)) if paths else None,
    )


class _Discovery:
    """Files to scan. Folders are pruned while walking, so a file's own name and
    its path relative to the configuration are all that is left to test."""

    def __init__(self, config: ScannerConfig) -> None:
        self.root = str(config.root.resolve())
        self.prefix = self.root.rstrip(os.sep) + os.sep
        self.exclude_names, self.exclude_paths = _compile(config.excluded)
        self.include_names, self.include_paths = _compile(config.include)

    def _relative(self, path: str) -> str | None:
        if path.startswith(self.prefix):
            return path[len(self.prefix) :].replace(os.sep, "/")
        return None

    def _path_matches(self, path: str, patterns: re.Pattern[str] | None) -> bool:
        """Whether ``path``, relative to the configuration, matches ``patterns``."""
        if patterns is None:
            return False
        relative = self._relative(path)
        return relative is not None and patterns.match(relative) is not None

    def excluded(self, path: str) -> bool:
        names = self.exclude_names
        if names is not None and names.match(os.path.basename(path)):
            return True
        return self._path_matches(path, self.exclude_paths)

    def _explicit_file_excluded(self, path: str) -> bool:
        relative = self._relative(path)
        parts = relative.split("/") if relative else [os.path.basename(path)]
        folders = [os.path.join(self.root, *parts[: i + 1]) for i in range(len(parts))]
        return any(self.excluded(folder) for folder in folders) if relative else self.excluded(path)

    def files(self, paths: Sequence[Path]) -> list[str]:
        """Absolute paths, sorted (strings: a Path per file costs more than its rules)."""
        found: set[str] = set()
        for given in paths:
            path = str(given.resolve())
            if not os.path.exists(path) and not os.path.islink(path):
                raise UsageError(f"{given}: no such file or directory")
            if not os.path.isdir(path):
                if not self._explicit_file_excluded(path):
                    found.add(path)
                continue
            if not os.access(path, os.R_OK | os.X_OK):
                raise UsageError(f"{given}: directory cannot be read")
            self._walk(path, found)
        return sorted(found)

    def _walk(self, top: str, found: set[str]) -> None:
        """What ``os.walk`` (not following links) would find, in less than half its time:
        every project scan walks the whole project, and a tree like Django's is mostly
        folders without Python files (locales), which os.walk stats one by one. This is
        ``excluded``/``included`` inlined: it runs for every entry."""
        exclude_names, exclude_paths = self.exclude_names, self.exclude_paths
        include_names, include_paths = self.include_names, self.include_paths
        folders = [top]
        while folders:
            try:
                entries = os.scandir(folders.pop())
            except OSError:
                continue  # as os.walk: a folder that cannot be listed is skipped
            with entries:
                for entry in entries:
                    name, path = entry.name, entry.path
                    if exclude_names is not None and exclude_names.match(name):
                        continue
                    try:
                        is_folder = entry.is_dir()
                    except OSError:
                        is_folder = False
                    if is_folder:
                        if not entry.is_symlink() and not self._path_matches(path, exclude_paths):
                            folders.append(path)
                    elif (
                        (include_names is not None and include_names.match(name))
                        or self._path_matches(path, include_paths)
                    ) and not self._path_matches(path, exclude_paths):
                        found.add(path)


# One file -------------------------------------------------------------------------


def analyze_file(
    task: FileTask, options: FileOptions, data: bytes | None = None, *, with_digest: bool = False
) -> FileReport:
    """Everything that can be decided from one file alone (``data``: its content, if read)."""
    report = FileReport(display=task.display)
    if data is None:
        try:
            data = Path(task.path).read_bytes()
        except OSError as exc:
            report.unreadable = f"{task.display}: {exc.strerror or exc}"
            return report
    if with_digest:
        report.digest = content_digest(data)
    try:
        tree = ast.parse(data, filename=task.display)
    except SyntaxError as exc:
        line = exc.lineno or 1
        column = exc.offset or 1
        report.findings.append(
            Finding(task.display, line, max(column, 1), "GOV000", f"cannot parse: {exc.msg}")
        )
        return report
    except (ValueError, UnicodeDecodeError) as exc:  # NUL bytes, undecodable source
        report.findings.append(Finding(task.display, 1, 1, "GOV000", f"cannot parse: {exc}"))
        return report
    source = SourceFile(
        tree=tree,
        text=data.decode("utf-8", errors="replace"),
        display_path=task.display,
        module=task.module,
        package=task.package,
        is_tool_runner=task.is_tool_runner,
        is_state_machine=task.is_state_machine,
        is_runner_caller=task.is_runner_caller,
        options=options,
    )
    rules = [rule(source) for rule in FILE_RULES if rule.applies_to(source)]
    checker = Checker(source, rules)
    if rules:
        checker.run()  # also finds classes defined inside functions
    for rule in rules:
        for finding in rule.found:
            if isinstance(finding, PendingFinding):
                report.pending.append(finding)
            else:
                report.findings.append(finding)
    report.suppressions, invalid = parse_suppressions(source.text, task.display, KNOWN_CODES)
    report.findings.extend(invalid)
    names = checker.names
    report.classes = {
        names.class_qualified_name(name): bases for name, bases in names.classes.items()
    }
    if task.module:
        # Only names that can be classes matter across files (re-exports).
        report.aliases = {
            f"{task.module}.{name}": target
            for name, target in names.imports.items()
            if name[:1].isupper() and target != f"{task.module}.{name}"
        }
    return report


# The class hierarchy across files ------------------------------------------------------


class ClassHierarchy:
    def __init__(self, reports: Iterable[FileReport], base_classes: tuple[str, ...]) -> None:
        self.bases: dict[str, tuple[str, ...]] = {}
        self.aliases: dict[str, str] = {}
        for report in reports:
            self.bases.update(report.classes)
            self.aliases.update(report.aliases)
        self.base_classes = frozenset(base_classes)
        self._memo: dict[str, bool] = {}

    def resolve(self, name: str) -> str:
        for _ in range(10):  # re-exports: pkg/__init__.py importing from pkg/module.py
            if name in self.bases or name not in self.aliases:
                return name
            name = self.aliases[name]
        return name

    def is_plugin_class(self, name: str) -> bool:
        name = self.resolve(name)
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = False  # cycles end here
        result = name.rsplit(".", 1)[-1] in self.base_classes or any(
            self.is_plugin_class(base) for base in self.bases.get(name, ())
        )
        self._memo[name] = result
        return result


# The whole scan ----------------------------------------------------------------------


def _codes(values: Iterable[str], label: str) -> tuple[str, ...]:
    codes = tuple(value.strip().upper() for value in values if value.strip())
    for code in codes:
        if not any(known.startswith(code) for known in KNOWN_CODES):
            raise ConfigError(
                f"{label}: unknown rule code {code!r} (known: {', '.join(sorted(KNOWN_CODES))})"
            )
    return codes


class Scanner:
    def __init__(
        self,
        config: ScannerConfig,
        *,
        cwd: Path | None = None,
        jobs: int = 1,
        parallel_threshold: int = PARALLEL_THRESHOLD,
        start_method: str = DEFAULT_START_METHOD,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where to keep analyses between runs (None: no cache)."""
        self.config = config
        self.cwd = (cwd or Path.cwd()).resolve()
        self.jobs = max(1, jobs)
        self.parallel_threshold = parallel_threshold
        self.start_method = start_method
        self.select = _codes(config.select, "select")
        self.ignore = _codes(config.ignore, "ignore")
        self.per_file_ignores = [
            (self._absolute_pattern(pattern), _codes(codes, f"per-file-ignores {pattern!r}"))
            for pattern, codes in config.per_file_ignores.items()
        ]
        self.options = FileOptions.from_config(config)
        self._tool_runners = {str(config.path(entry.module)) for entry in config.tool_runner}
        self._runner_delegates = [config.path(entry) for entry in config.runner_delegates]
        self._state_machines = {str(config.path(module)) for module in config.state_machine_modules}
        self._caller_prefixes = [str(config.path(entry)) for entry in config.runner_callers]
        self._cwd_prefix = str(self.cwd).rstrip(os.sep) + os.sep
        self.cache_dir = cache_dir

    def _absolute_pattern(self, pattern: str) -> str:
        """Patterns with a "/" are relative to the configuration's folder; names match anywhere."""
        if "/" not in pattern.rstrip("/"):
            return pattern
        return os.path.normpath(os.path.join(self.config.root.resolve(), pattern))

    def _is_runner_caller(self, path: str) -> bool:
        return any(
            path == caller or path.startswith(caller + os.sep) for caller in self._caller_prefixes
        )

    def task(self, path: str) -> FileTask:
        module, package = module_names(path)
        display = (
            path[len(self._cwd_prefix) :].replace(os.sep, "/")
            if path.startswith(self._cwd_prefix)
            else Path(path).as_posix()
        )
        return FileTask(
            path=path,
            display=display,
            module=module,
            package=package,
            is_tool_runner=path in self._tool_runners or self._is_runner_delegate(path),
            is_state_machine=path in self._state_machines,
            is_runner_caller=self._is_runner_caller(path),
        )

    def _is_runner_delegate(self, path: str) -> bool:
        """A module named in ``runner-delegates`` is the runner's own: it may call plugins."""
        resolved = Path(path)
        return any(
            resolved == delegate or delegate in resolved.parents
            for delegate in self._runner_delegates
        )

    def scan(self, paths: Sequence[Path]) -> ScanResult:
        discovery = _Discovery(self.config)
        scanned = discovery.files(paths)
        walked = [str(path.resolve()) for path in paths if path.is_dir()]
        indexed = scanned
        if self.config.opted_in and not self._covers_project(paths):
            root = self.config.root.resolve()
            indexed = sorted({*scanned, *discovery.files([root])})
            walked.append(str(root))
        reports = self._analyze([self.task(path) for path in indexed], walked)

        hierarchy = ClassHierarchy(reports.values(), self.config.plugin_base_classes)
        asked = [reports[path] for path in scanned]
        findings: list[Finding] = []
        for report in asked:
            findings.extend(report.findings)
            findings.extend(
                pending.finding
                for pending in report.pending
                if hierarchy.is_plugin_class(pending.class_name)
            )
        project = Project(self.config, self.cwd, paths)
        for rule in PROJECT_RULES:
            findings.extend(rule().check_project(project))
        return self._finish(asked, findings, files_scanned=len(scanned))

    def _covers_project(self, paths: Sequence[Path]) -> bool:
        root = self.config.root.resolve()
        return any(path == root or path in root.parents for path in map(Path.resolve, paths))

    def _analyze(self, tasks: list[FileTask], walked: list[str]) -> dict[str, FileReport]:
        """Every task's report, from the cache where it holds this content, else analysed."""
        cache = None
        if self.cache_dir is not None:
            cache = ScanCache(self.cache_dir, self.options)
        reports: dict[str, FileReport] = {}
        missed: list[tuple[FileTask, bytes | None]] = []
        for task in tasks:
            if cache is None or task.path not in cache:
                missed.append((task, None))  # read where it is analysed
                continue
            try:
                # Unbuffered, not through Path: this runs for every file of the project.
                with open(task.path, "rb", buffering=0) as stream:
                    data = stream.readall()
            except OSError:
                missed.append((task, None))  # reported as unreadable there
                continue
            stored = cache.get(task.path, content_digest(data), task.place)
            report = FileReport.from_cache(task.display, stored) if stored is not None else None
            if report is None:
                missed.append((task, data))
            else:
                reports[task.path] = report

        analyze = functools.partial(
            analyze_file, options=self.options, with_digest=cache is not None
        )
        if self.jobs > 1 and len(missed) >= self.parallel_threshold:
            import multiprocessing  # only here: it costs start-up time for every serial run

            chunk = max(1, len(missed) // (self.jobs * 8))
            with multiprocessing.get_context(self.start_method).Pool(self.jobs) as pool:
                analysed = pool.map(analyze, [task for task, _ in missed], chunksize=chunk)
        else:
            analysed = [analyze(task, data=data) for task, data in missed]
        for (task, _), report in zip(missed, analysed, strict=True):
            reports[task.path] = report
            if cache is not None and report.digest and report.unreadable is None:
                cache.put(task.path, report.digest, task.place, report.to_cache())
        if cache is not None:
            cache.forget_missing(walked, set(reports))
            cache.save()
        return {task.path: reports[task.path] for task in tasks}

    def _selected(self, code: str) -> bool:
        if any(code.startswith(prefix) for prefix in self.ignore):
            return False
        if code == "GOV000" or not self.select:
            return True
        return any(code.startswith(prefix) for prefix in self.select)

    def _ignored_for_file(self, finding: Finding) -> bool:
        path = os.path.normpath(os.path.join(self.cwd, finding.path))
        name = os.path.basename(path)
        return any(
            (
                fnmatch.fnmatch(name if "/" not in pattern else path, pattern)
                or fnmatch.fnmatch(path, pattern.rstrip("/") + "/*")
            )
            and any(finding.rule.startswith(code) for code in codes)
            for pattern, codes in self.per_file_ignores
        )

    def _finish(
        self, reports: list[FileReport], findings: list[Finding], *, files_scanned: int
    ) -> ScanResult:
        suppressions = {report.display: report.suppressions for report in reports}
        violations: list[Finding] = []
        suppressed: list[SuppressedFinding] = []
        for finding in sorted(set(findings)):
            if not self._selected(finding.rule) or self._ignored_for_file(finding):
                continue
            suppression = suppressions.get(finding.path, {}).get(finding.line)
            if (
                suppression is not None
                and finding.rule in suppression.codes
                and finding.rule not in ("GOV000", "GOV007")
            ):
                suppressed.append(SuppressedFinding(finding, suppression.reason))
            else:
                violations.append(finding)
        return ScanResult(
            files_scanned=files_scanned,
            violations=violations,
            suppressed=suppressed,
            unreadable=sorted(report.unreadable for report in reports if report.unreadable),
        )
