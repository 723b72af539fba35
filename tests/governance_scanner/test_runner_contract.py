"""GOV002-GOV004: the runner contract, on fixtures and on a copy of the project's runner."""

import shutil
from pathlib import Path

import pytest

from governance_scanner.config import load_config
from governance_scanner.scanner import Scanner
from tests.governance_scanner.conftest import (
    FIXTURES,
    ROOT,
    expected_findings,
    located,
    run_scan,
    runner,
)

CONTRACT = ("GOV002", "GOV003", "GOV004")
FINALLY_PATHS = sorted((FIXTURES / "finally_paths").glob("*.py"))


@pytest.mark.parametrize("fixture", FINALLY_PATHS, ids=lambda path: path.stem)
def test_every_path_out_of_the_finally_must_record_metrics(fixture):
    path = fixture.relative_to(FIXTURES).as_posix()
    result = run_scan(path, tool_runner_module=path, select=CONTRACT)
    expected = expected_findings(fixture)
    assert located(result) == expected
    assert bool(expected) == fixture.stem.startswith("bad_")


def test_the_skipping_path_is_named():
    path = "finally_paths/bad_break.py"
    (finding,) = run_scan(path, tool_runner_module=path, select=CONTRACT).violations
    assert finding.message.endswith("(skipped on the way to a break)")


@pytest.mark.parametrize(
    ("fixture", "entry"),
    [
        ("function_entry.py", "run_tool"),
        ("delegate.py", "ToolRunner.run"),
        ("delegate_outside_try.py", "ToolRunner.run"),
        ("reaches_nothing.py", "ToolRunner.run"),
    ],
)
def test_entries_are_followed_into_the_functions_they_hand_the_plugin_to(fixture, entry):
    path = f"runners/{fixture}"
    result = run_scan(
        path,
        tool_runner=runner(path, entry),
        plugin_methods=("run", "analyze"),
        plugin_factories=("*_loader.get",),
        metrics_calls=("update_execution_metrics", "record_tool_metrics"),
        select=CONTRACT,
    )
    assert located(result) == expected_findings(FIXTURES / path)


@pytest.mark.parametrize("fixture", ["split/runner.py", "split/outside_try.py"])
def test_entries_are_followed_into_their_delegates_and_back(fixture):
    """The child's code in a module of its own, calling back into the runner's module."""
    path = f"runners/{fixture}"
    result = run_scan(
        path, tool_runner=runner(path), runner_delegates=("runners/split",), select=CONTRACT
    )
    assert located(result) == expected_findings(FIXTURES / path)


def test_only_the_configured_delegates_are_followed():
    path = "runners/split/runner.py"
    (finding,) = run_scan(path, tool_runner=runner(path), select=CONTRACT).violations
    assert (finding.rule, finding.message) == (
        "GOV002",
        "ToolRunner.run reaches no plugin execution (run)",
    )


def test_a_missing_entry_is_reported_at_the_module_or_the_class():
    path = "runners/delegate.py"
    function = run_scan(path, tool_runner=runner(path, "run_tool"), select=CONTRACT)
    assert [(f.line, f.rule, f.message) for f in function.violations] == [
        (1, "GOV002", "no function run_tool in runners/delegate.py")
    ]
    method = run_scan(path, tool_runner=runner(path, "ToolRunner.execute"), select=CONTRACT)
    assert [(f.line, f.rule, f.message) for f in method.violations] == [
        (1, "GOV002", "class ToolRunner has no execute method")
    ]


def test_several_entries_are_each_checked():
    good, bad = "runners/delegate.py", "finally_paths/bad_loop.py"
    result = run_scan(
        good,
        bad,
        tool_runner=(*runner(good), *runner(bad)),
        select=CONTRACT,
    )
    assert [(f.path, f.rule) for f in result.violations] == [(bad, "GOV004")]


# The project's own runner ------------------------------------------------------------------


def _project_copy(tmp_path: Path, edit=None) -> Path:
    """The project's configuration and a copy of its runtime, the runner edited, in ``tmp_path``."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    runtime = tmp_path / "plugins" / "runtime"
    runtime.parent.mkdir()
    shutil.copy(ROOT / "plugins" / "__init__.py", runtime.parent / "__init__.py")
    shutil.copytree(
        ROOT / "plugins" / "runtime", runtime, ignore=shutil.ignore_patterns("__pycache__")
    )
    if edit is not None:
        module, old, new = edit if len(edit) == 3 else ("tool_runner.py", *edit)
        target = runtime / module
        text = target.read_text()
        assert text.count(old) == 1, old
        target.write_text(text.replace(old, new))
    return runtime / "tool_runner.py"


def _scan_copy(tmp_path: Path, delegates: tuple[str, ...] = ()):
    config = load_config(None, cwd=tmp_path).with_overrides(runner_delegates=delegates)
    return Scanner(config, cwd=tmp_path).scan([tmp_path])


# Following the whole runtime, isolation included, finds what the configured delegate does.
DELEGATES = pytest.mark.parametrize(
    "delegates",
    [("plugins/runtime/plugin_side.py",), ("plugins/runtime",)],
    ids=["plugin-side", "runtime"],
)


@DELEGATES
def test_the_projects_runner_keeps_its_contract(tmp_path, delegates):
    _project_copy(tmp_path)
    assert _scan_copy(tmp_path, delegates).violations == []


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        # the finally becomes an ordinary block after the try
        (
            (
                "        finally:\n            elapsed_ms",
                "        if True:\n            elapsed_ms",
            ),
            "GOV003",
        ),
        # the metrics call is gone from the finally
        (("self._registry.update_execution_metrics(", "self._registry.record("), "GOV004"),
        # the metrics call is skipped on success
        (
            (
                "            try:\n                self._registry.update_execution_metrics(",
                "            try:\n                if error is None:\n                    return\n"
                "                self._registry.update_execution_metrics(",
            ),
            "GOV004",
        ),
        # the plugin's run is no longer called where it is isolated: the runner governs nothing
        (
            (
                "plugin_side.py",
                "output = plugin.run(validated)",
                "output = plugin.execute(validated)",
            ),
            "GOV002",
        ),
    ],
    ids=["no-finally", "no-metrics", "metrics-skipped", "no-plugin-call"],
)
@DELEGATES
def test_breaking_the_projects_runner_is_caught(tmp_path, edit, code, delegates):
    _project_copy(tmp_path, edit)
    result = _scan_copy(tmp_path, delegates)
    assert {(f.path, f.rule) for f in result.violations} == {
        ("plugins/runtime/tool_runner.py", code)
    }


def test_a_delegate_is_the_runners_own_and_may_call_the_plugin():
    """The plugin call in a delegate module: no GOV001 there, and the contract holds."""
    path = "runners/delegated"
    entry = runner(f"{path}/runner.py")
    delegated = run_scan(path, tool_runner=entry, runner_delegates=(path,))
    assert delegated.violations == []
    (finding,) = run_scan(path, tool_runner=entry, select=("GOV001",)).violations
    assert finding.path.endswith("delegated/side.py")
