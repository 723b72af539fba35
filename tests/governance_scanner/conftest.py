import re
from pathlib import Path

import pytest

from governance_scanner.config import RunnerEntry, ScannerConfig
from governance_scanner.scanner import Scanner, ScanResult

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = FIXTURES.parents[2]  # the project
EXPECT = re.compile(r"# expect: ((?:GOV\d{3}:\d+\s*)+)")


def expected_findings(path: Path) -> set[tuple[int, int, str]]:
    """The ``# expect: CODE:COLUMN`` markers of a fixture file."""
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        if match:
            for item in match.group(1).split():
                code, column = item.split(":")
                found.add((number, int(column), code))
    return found


def runner(module: str, name: str = "ToolRunner.run") -> tuple[RunnerEntry, ...]:
    return (RunnerEntry(module, name),)


def run_scan(
    *paths: str | Path, root: Path = FIXTURES, jobs: int = 1, scanner=None, **options
) -> ScanResult:
    """Scan fixtures; ``tool_runner_module`` and ``state_machine_module`` as in the config file."""
    module = options.pop("tool_runner_module", "toolrunner/good.py")
    options.setdefault("tool_runner", runner(module))
    options.setdefault("tool_runner_configured", True)
    if "state_machine_module" in options:
        options["state_machine_modules"] = (options.pop("state_machine_module"),)
    config = ScannerConfig(root=root, **options)
    scanner = Scanner(config, cwd=root, jobs=jobs, **(scanner or {}))
    return scanner.scan([root / path for path in paths])


def located(result: ScanResult, code: str | None = None) -> set[tuple[int, int, str]]:
    return {(f.line, f.column, f.rule) for f in result.violations if code is None or f.rule == code}


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Commands run by a test (in process or as subprocesses) keep their cache here,
    never in the source tree."""
    folder = tmp_path_factory.mktemp("scanner-cache")
    monkeypatch.setenv("GOVERNANCE_SCANNER_CACHE_DIR", str(folder))
    return folder
