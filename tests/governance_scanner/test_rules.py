import pytest

from governance_scanner.config import ScannerConfig, load_config
from governance_scanner.scanner import Scanner
from tests.governance_scanner.conftest import FIXTURES, expected_findings, located, run_scan


def test_gov005_reports_every_job_status_write():
    result = run_scan("gov005_bad.py", select=("GOV005",))
    assert located(result) == expected_findings(FIXTURES / "gov005_bad.py")
    assert len(result.violations) == 16


def test_gov005_leaves_other_models_and_reads_alone():
    assert located(run_scan("gov005_good.py", select=("GOV005",))) == set()


def test_gov005_allows_the_state_machine_module():
    result = run_scan("gov005_bad.py", select=("GOV005",), state_machine_module="gov005_bad.py")
    assert result.violations == []


def test_gov006_reports_each_use_outside_the_allowed_callers():
    result = run_scan("gov006_bad.py", "allowed", select=("GOV006",), runner_callers=("allowed",))
    assert located(result) == expected_findings(FIXTURES / "gov006_bad.py")


def test_gov006_default_callers_allow_the_service_plugins_and_tests(tmp_path):
    for relative in (
        "execution/services/plugin_execution_service.py",
        "plugins/testing.py",
        "tests/test_x.py",
        "execution/api/views.py",
    ):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("from plugins.runtime.tool_runner import ToolRunner\nToolRunner()\n")
    config = ScannerConfig(root=tmp_path, select=("GOV006",))
    result = Scanner(config, cwd=tmp_path).scan([tmp_path])
    assert [(f.path, f.rule) for f in result.violations] == [("execution/api/views.py", "GOV006")]


@pytest.mark.parametrize(
    "fixture",
    [
        "no_run.py",
        "bad_signature.py",
        "keyword_only.py",
        "no_finally.py",
        "metrics_under_if.py",
        "metrics_after_return.py",
        "call_in_finally.py",
    ],
)
def test_toolrunner_rules_on_broken_toolrunners(fixture):
    path = f"toolrunner/{fixture}"
    result = run_scan(path, tool_runner_module=path, select=("GOV002", "GOV003", "GOV004"))
    assert located(result) == expected_findings(FIXTURES / path)


def test_a_module_without_a_toolrunner_class_is_reported_at_line_one():
    path = "toolrunner/no_class.py"
    result = run_scan(path, tool_runner_module=path)
    assert located(result) == {(1, 1, "GOV002")}


@pytest.mark.parametrize("fixture", ["good.py", "nested.py"])
def test_sound_toolrunners_pass(fixture):
    path = f"toolrunner/{fixture}"
    assert run_scan(path, tool_runner_module=path).violations == []


def test_the_projects_own_toolrunner_passes():
    from django.conf import settings

    config = ScannerConfig(
        root=settings.BASE_DIR, runner_delegates=("plugins/runtime/plugin_side.py",)
    )
    result = Scanner(config, cwd=settings.BASE_DIR).scan([settings.BASE_DIR / "plugins"])
    assert result.violations == []


def test_a_configured_runner_module_that_is_missing_is_reported_on_the_configuration(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.governance_scanner]\ntool-runner = ["core/runner.py:ToolRunner.run"]\n'
    )
    (tmp_path / "app.py").write_text("x = 1\n")
    config = load_config(tmp_path / "pyproject.toml", cwd=tmp_path)
    result = Scanner(config, cwd=tmp_path).scan([tmp_path])
    assert [(f.path, f.line, f.rule) for f in result.violations] == [
        ("pyproject.toml", 1, "GOV002")
    ]
    assert "core/runner.py does not exist" in result.violations[0].message


def test_the_default_runner_is_not_required_where_nothing_is_configured(tmp_path):
    (tmp_path / "app.py").write_text("x = 1\n")
    config = load_config(None, cwd=tmp_path)
    assert Scanner(config, cwd=tmp_path).scan([tmp_path]).violations == []


def test_the_default_runner_is_required_once_the_project_opts_in(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.governance_scanner]\n")
    (tmp_path / "app.py").write_text("x = 1\n")
    config = load_config(None, cwd=tmp_path)
    result = Scanner(config, cwd=tmp_path).scan([tmp_path])
    assert [(f.path, f.line, f.rule) for f in result.violations] == [
        ("pyproject.toml", 1, "GOV002")
    ]
    assert "plugins/runtime/tool_runner.py does not exist" in result.violations[0].message


def test_scanning_a_folder_without_the_toolrunner_location_skips_gov002(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.py").write_text("x = 1\n")
    result = Scanner(ScannerConfig(root=tmp_path), cwd=tmp_path).scan([tmp_path / "elsewhere"])
    assert result.violations == []
