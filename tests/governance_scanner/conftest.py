import re
from pathlib import Path

import pytest

from governance_scanner.config import ScannerConfig
from governance_scanner.scanner import Scanner, ScanResult

FIXTURES = Path(__file__).resolve().parent / "fixtures"
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


def run_scan(*paths: str | Path, root: Path = FIXTURES, jobs: int = 1, **options) -> ScanResult:
    options.setdefault("tool_runner_module", "toolrunner/good.py")
    config = ScannerConfig(root=root, **options)
    return Scanner(config, cwd=root, jobs=jobs).scan([root / path for path in paths])


def located(result: ScanResult, code: str | None = None) -> set[tuple[int, int, str]]:
    return {(f.line, f.column, f.rule) for f in result.violations if code is None or f.rule == code}


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
