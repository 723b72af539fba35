"""Every configuration key, on a miniature plugin system and on small trees in tmp_path."""

from pathlib import Path

import pytest

from governance_scanner.config import ConfigError, RunnerEntry, ScannerConfig, load_config
from governance_scanner.scanner import Scanner
from tests.governance_scanner.conftest import FIXTURES, expected_findings

TOOLBOX = FIXTURES / "toolbox"


def all_expected(folder: Path) -> set[tuple[str, int, int, str]]:
    return {
        (path.relative_to(folder).as_posix(), line, column, code)
        for path in folder.rglob("*.py")
        for line, column, code in expected_findings(path)
    }


def scan_toolbox(**overrides):
    config = load_config(TOOLBOX / "pyproject.toml", cwd=TOOLBOX).with_overrides(**overrides)
    return Scanner(config, cwd=TOOLBOX).scan([TOOLBOX])


def test_a_miniature_plugin_system_reports_its_bypasses_and_not_its_traps():
    result = scan_toolbox()
    found = {(f.path, f.line, f.column, f.rule) for f in result.violations}
    assert found == all_expected(TOOLBOX)
    assert {f.rule for f in result.violations} == {"GOV001", "GOV004", "GOV005", "GOV006"}
    assert not any(f.path == "toolbox/traps.py" for f in result.violations)


def test_the_toolbox_configuration_is_read_as_written():
    config = load_config(TOOLBOX / "pyproject.toml", cwd=TOOLBOX)
    assert config.plugin_methods == ("run", "analyze")
    assert config.plugin_factories == ("construct_plugin", "plugin_manager.get", "*_loader.get")
    assert config.tool_runner == (
        RunnerEntry("toolbox/runner.py", "run_tool"),
        RunnerEntry("toolbox/runner.py", "ImageRunner.analyze"),
    )
    assert config.tool_runner_configured
    assert config.metrics_calls == ("record_tool_metrics",)
    assert config.job_models == ("ToolRun",)
    assert config.state_machine_modules == ("toolbox/states.py", "toolbox/legacy_states.py")


def test_without_the_plugin_system_keys_its_bypasses_go_unseen():
    """The defaults know only run, the registry and Job: the configuration is what finds these."""
    result = scan_toolbox(
        plugin_methods=("run",), plugin_factories=(), job_models=("Job",), select=("GOV001",)
    )
    lines = {(f.path, f.line) for f in result.violations}
    assert ("toolbox/app.py", 14) not in lines  # tool_loader.get(name).run: unknown factory
    assert ("toolbox/app.py", 18) not in lines  # analyze is not a plugin method by default
    assert ("toolbox/app.py", 22) in lines  # Blur derives from the configured base Tool


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def test_per_file_ignores_are_relative_to_the_configuration_outside_the_scanned_tree(tmp_path):
    bypass = "def f(plugin):\n    plugin.run(1)\n"
    write(
        tmp_path,
        {
            "config/pyproject.toml": (
                "[tool.governance_scanner]\n"
                'per-file-ignores = {"../tree/scripts/*" = ["GOV001"], "scripts/*" = ["GOV001"],'
                ' "generated_*.py" = ["GOV001"]}\n'
            ),
            "tree/scripts/once.py": bypass,
            "tree/app/scripts/deep.py": bypass,
            "tree/app/generated_client.py": bypass,
            "tree/app/views.py": bypass,
        },
    )
    tree = tmp_path / "tree"
    config = load_config(tmp_path / "config" / "pyproject.toml", cwd=tree)
    result = Scanner(config, cwd=tree).scan([tree])
    # "scripts/*" means config/scripts, not scripts/ under the current directory.
    assert [f.path for f in result.violations] == ["app/scripts/deep.py", "app/views.py"]


@pytest.mark.parametrize("spelling", ["state-machine-module", "state_machine_module"])
def test_the_single_state_machine_module_is_an_alias(tmp_path, spelling):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.governance_scanner]\n{spelling} = "core/jobs.py"\n'
    )
    config = load_config(tmp_path / "pyproject.toml", cwd=tmp_path)
    assert config.state_machine_modules == ("core/jobs.py",)


def test_underscores_and_dashes_are_the_same_keys(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.governance_scanner]\n"
        'plugin_methods = ["execute"]\n'
        'plugin_factories = ["make_tool"]\n'
        'tool_runner = "core/runner.py:execute_tool"\n'
        'metrics_calls = ["count"]\n'
        'job_models = ["Task"]\n'
        'state_machine_modules = ["a.py", "b.py"]\n'
        'runner_delegates = ["core/child.py"]\n'
    )
    config = load_config(tmp_path / "pyproject.toml", cwd=tmp_path)
    assert config == ScannerConfig(
        root=tmp_path,
        source=(tmp_path / "pyproject.toml").resolve(),
        plugin_methods=("execute",),
        plugin_factories=("make_tool",),
        tool_runner=(RunnerEntry("core/runner.py", "execute_tool"),),
        tool_runner_configured=True,
        opted_in=True,
        metrics_calls=("count",),
        job_models=("Task",),
        state_machine_modules=("a.py", "b.py"),
        runner_delegates=("core/child.py",),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tool-runner = ["core/runner.py"]', "must be 'path/to/module.py:Class.method'"),
        ('tool-runner = ["core/runner.py:Tool Runner.run"]', "must be 'path/to/module.py"),
        ('plugin-methods = ["not a name"]', "is not a name"),
        ('plugin-factories = "make"', "must be a list of strings"),
        ('state-machine-module = "a.py"\nstate-machine-modules = ["b.py"]', "twice"),
        ('job-model = ["Job"]', "unknown key 'job-model'"),
    ],
)
def test_bad_values_of_the_new_keys_are_clear_errors(tmp_path, text, message):
    (tmp_path / "pyproject.toml").write_text(f"[tool.governance_scanner]\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "pyproject.toml", cwd=tmp_path)


def test_state_machine_modules_allow_their_own_writes_only(tmp_path):
    write_status = "def f(job):\n    job.status = 'done'\n"
    write(tmp_path, {"a.py": write_status, "b.py": write_status, "c.py": write_status})
    config = ScannerConfig(root=tmp_path, state_machine_modules=("a.py", "b.py"))
    result = Scanner(config, cwd=tmp_path).scan([tmp_path])
    assert [(f.path, f.rule) for f in result.violations] == [("c.py", "GOV005")]


def test_a_layer_skip_names_the_configured_runner():
    messages = {f.message for f in scan_toolbox(select=("GOV006",)).violations}
    assert messages
    assert all("ToolRunner" not in message for message in messages)
    assert any(message.startswith(("run_tool", "ImageRunner")) for message in messages)
