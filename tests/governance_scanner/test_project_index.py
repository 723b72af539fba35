"""Every scan knows the whole project: a file alone is reported as a full scan reports it.

Also the missing runner of a project that opted in (GOV002), and that ``make scan``
and the pre-commit hook are one command.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from governance_scanner.config import ScannerConfig, load_config
from governance_scanner.scanner import Scanner, _Discovery
from tests.governance_scanner.conftest import FIXTURES, ROOT, expected_findings, runner

WORDCOUNT = FIXTURES / "wordcount"
CALLER = "wordcount/report.py"


def scan(root: Path, *paths: str, **overrides):
    config = load_config(root / "pyproject.toml", cwd=root).with_overrides(**overrides)
    return Scanner(config, cwd=root).scan([root / path for path in paths] or [root])


def by_file(result) -> dict[str, set[tuple[int, int, str]]]:
    found: dict[str, set[tuple[int, int, str]]] = {}
    for f in result.violations:
        found.setdefault(f.path, set()).add((f.line, f.column, f.rule))
    return found


def test_the_whole_project_reports_the_direct_call_of_a_plugin_defined_elsewhere():
    assert by_file(scan(WORDCOUNT)) == {CALLER: expected_findings(WORDCOUNT / CALLER)}


def test_the_calling_file_alone_is_reported_as_the_whole_scan_reports_it():
    alone = scan(WORDCOUNT, CALLER)
    assert alone.files_scanned == 1
    assert by_file(alone) == {CALLER: {(10, 14, "GOV001")}}


@pytest.mark.parametrize(
    "relative",
    sorted(p.relative_to(WORDCOUNT).as_posix() for p in WORDCOUNT.rglob("*.py")),
)
def test_each_file_alone_gets_exactly_its_part_of_the_full_scan(relative):
    full = by_file(scan(WORDCOUNT)).get(relative, set())
    assert by_file(scan(WORDCOUNT, relative)) == ({relative: full} if full else {})


def test_a_file_and_a_folder_know_the_rest_of_the_project_too():
    """Neither the caller nor the runtime folder defines a plugin class; the index does."""
    result = scan(WORDCOUNT, CALLER, "wordcount/runtime")
    assert by_file(result) == {CALLER: {(10, 14, "GOV001")}}


def test_without_configuration_a_scan_knows_only_the_files_it_is_given():
    """No project opted in (``--no-config``, another tree): the index is what was given."""
    config = ScannerConfig(root=WORDCOUNT, tool_runner=runner("wordcount/runtime/runner.py"))
    alone = Scanner(config, cwd=WORDCOUNT).scan([WORDCOUNT / CALLER])
    assert alone.violations == []
    whole = Scanner(config, cwd=WORDCOUNT).scan([WORDCOUNT])
    assert by_file(whole) == {CALLER: {(10, 14, "GOV001")}}


def test_files_outside_the_project_are_indexed_with_it(tmp_path):
    """A file given from outside the configured folder still sees the project's classes."""
    outside = tmp_path / "script.py"
    outside.write_text(
        "from wordcount.plugins import WordCountPlugin\n\nWordCountPlugin().run({})\n"
    )
    config = load_config(WORDCOUNT / "pyproject.toml", cwd=WORDCOUNT)
    result = Scanner(config, cwd=tmp_path).scan([outside])
    assert [(f.path, f.line, f.rule) for f in result.violations] == [("script.py", 3, "GOV001")]


def test_excluded_files_of_the_project_are_not_indexed(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.governance_scanner]\ntool-runner = []\nextend-exclude = ["vendor"]\n'
    )
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "__init__.py").write_text("")
    (tmp_path / "vendor" / "plugins.py").write_text(
        "class Plugin:\n    pass\n\nclass Sorter(Plugin):\n    pass\n"
    )
    (tmp_path / "app.py").write_text("from vendor.plugins import Sorter\n\nSorter().run([])\n")
    assert scan(tmp_path, "app.py").violations == []
    included = scan(tmp_path, "app.py", extend_exclude=())
    assert [(f.path, f.rule) for f in included.violations] == [("app.py", "GOV001")]


# Missing runners ------------------------------------------------------------------------


def test_a_project_that_opted_in_without_a_runner_gets_gov002_naming_the_expected_module():
    result = scan(FIXTURES / "no_runner")
    assert [(f.path, f.line, f.rule) for f in result.violations] == [
        ("pyproject.toml", 1, "GOV002")
    ]
    assert "plugins/runtime/tool_runner.py does not exist" in result.violations[0].message
    assert "tool-runner = []" in result.violations[0].message


def test_a_project_without_a_runner_by_design_says_so_and_scans_clean():
    config = load_config(FIXTURES / "no_runner_by_design" / "pyproject.toml", cwd=FIXTURES)
    assert (config.tool_runner, config.tool_runner_configured) == ((), True)
    assert scan(FIXTURES / "no_runner_by_design").violations == []


def test_without_a_runner_there_is_no_layer_to_skip(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.governance_scanner]\ntool-runner = []\n")
    (tmp_path / "app.py").write_text("from elsewhere import ToolRunner\n\nToolRunner()\n")
    assert scan(tmp_path).violations == []


def test_no_config_on_another_tree_still_ignores_a_runner_nobody_configured():
    code, out, err = command("--no-config", ".", cwd=FIXTURES / "no_runner")
    assert (code, err) == (0, "")
    assert out.startswith("No violations")


def test_the_command_reports_the_missing_runner_from_the_projects_folder():
    code, out, _ = command(cwd=FIXTURES / "no_runner")
    assert code == 1
    assert out.startswith("pyproject.toml:1:1: GOV002 tool-runner module ")


# make scan and pre-commit ------------------------------------------------------------------


def command(*args: str, cwd: Path, entry: list[str] | None = None) -> tuple[int, str, str]:
    completed = subprocess.run(
        [*(entry or [sys.executable, "-m", "governance_scanner"]), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.returncode, completed.stdout, completed.stderr


def hook_entry() -> list[str]:
    """The pre-commit hook's command, with this interpreter for the project's venv."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (hook,) = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == "governance-scan"]
    words = shlex.split(hook["entry"])
    assert words[0] == ".venv/bin/python"
    return [sys.executable, *words[1:]]


def make_scan_entry() -> list[str]:
    recipe = re.search(r"^scan:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None
    words = shlex.split(recipe.group(1))
    assert words[0] == "$(BIN)/python"
    return [sys.executable, *words[1:]]


def test_make_scan_and_the_pre_commit_hook_are_the_same_command():
    hook, make = hook_entry(), make_scan_entry()
    assert hook[1:3] == make[1:3] == ["-m", "governance_scanner"]
    # Only the worker count differs: the hook runs in several processes at once already.
    assert [w for w in hook if w not in ("--jobs", "1")] == make


def test_the_hook_on_a_changed_file_reports_what_make_scan_reports_for_it():
    """pre-commit appends the changed files to the entry; make scan names none."""
    hook = command(CALLER, "wordcount/runtime/runner.py", cwd=WORDCOUNT, entry=hook_entry())
    full = command(cwd=WORDCOUNT, entry=make_scan_entry())
    assert hook[0] == full[0] == 1
    violation = f"{CALLER}:10:14: GOV001"
    assert [line for line in full[1].splitlines() if line.startswith(violation)]
    assert hook[1].splitlines()[:-1] == full[1].splitlines()[:-1]
    assert hook[1].splitlines()[-1].endswith("(2 files scanned).")


def test_discovery_finds_what_os_walk_finds(tmp_path):
    """The index walks every project on every run, with scandir; the rules are os.walk's."""
    for relative in (
        "a.py",
        "notes.txt",
        "pkg/__init__.py",
        "pkg/gen/skip.py",
        "pkg/deep/er/x.py",
        "node_modules/lib.py",
        "scripts/tool",
        "scripts/other",
        "data/a.pyi",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x = 1\n")
    (tmp_path / "linked_folder").symlink_to(tmp_path / "pkg", target_is_directory=True)
    (tmp_path / "linked.py").symlink_to(tmp_path / "a.py")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "gone.py")
    config = ScannerConfig(
        root=tmp_path, include=("*.py", "scripts/tool"), extend_exclude=("pkg/gen", "*.pyi")
    )
    found = _Discovery(config).files([tmp_path])
    assert [Path(p).relative_to(tmp_path).as_posix() for p in found] == [
        "a.py",
        "dangling.py",
        "linked.py",
        "pkg/__init__.py",
        "pkg/deep/er/x.py",
        "scripts/tool",
    ]
