import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from sarif_pydantic import Sarif  # type: ignore[import-untyped]

from governance_scanner.rules import RULES
from tests.governance_scanner.conftest import FIXTURES

ROOT = Path(settings.BASE_DIR)
CODES = [rule.code for rule in RULES]
MANAGE = [sys.executable, str(ROOT / "manage.py"), "scan_violations"]
MODULE = [sys.executable, "-m", "governance_scanner"]


def scan(*args: str, cwd: Path = FIXTURES, command=MANAGE) -> tuple[int, str, str]:
    """The scanner as a subprocess (manage.py scan_violations by default), from ``cwd``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.returncode, completed.stdout, completed.stderr


def call(*args: str, capsys) -> tuple[int, str]:
    try:
        call_command("scan_violations", *args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().out


def test_json_output_has_the_documented_shape(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out = call(
        "--no-config", "--format", "json", "suppressions.py", "gov006_bad.py", capsys=capsys
    )
    assert code == 1
    report = json.loads(out)
    assert set(report) == {"version", "files_scanned", "violations", "suppressed"}
    assert (report["version"], report["files_scanned"]) == (1, 2)
    first = report["violations"][0]
    assert set(first) == {"rule", "name", "path", "line", "column", "message"}
    assert first["path"] == "gov006_bad.py"  # relative to the current directory, "/" separators
    assert first["line"] >= 1
    assert first["column"] >= 1
    suppressed = report["suppressed"][0]
    assert set(suppressed) == {"rule", "name", "path", "line", "column", "message", "reason"}
    assert suppressed["reason"] == "exercises the runtime guard"
    assert {v["name"] for v in report["violations"]} >= {"layer-skip", "invalid-suppression"}


def test_sarif_output_is_valid_sarif_2_1_0_for_code_scanning(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out = call(
        "--no-config", "--format", "sarif", "gov001_bad.py", "suppressions.py", capsys=capsys
    )
    assert code == 1
    log = json.loads(out)
    Sarif.model_validate(log)  # the SARIF 2.1.0 object model
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "governance-scanner"
    assert [rule["id"] for rule in rules] == CODES
    assert run["tool"]["driver"]["version"] == metadata.version("governed-plugin-execution")
    uri = run["tool"]["driver"]["informationUri"]
    assert uri.endswith("docs/scanner.md") or "governed-plugin-execution" in uri
    assert all(
        rule["name"] and rule["help"]["text"] and rule["shortDescription"]["text"] for rule in rules
    )
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]
        assert not location["artifactLocation"]["uri"].startswith("/")
        assert location["region"]["startLine"] >= 1
        assert location["region"]["startColumn"] >= 1
        assert result["message"]["text"]
    suppressed = [r for r in run["results"] if "suppressions" in r]
    assert suppressed[0]["suppressions"] == [
        {"kind": "inSource", "justification": "exercises the runtime guard"}
    ]


def test_github_output_is_one_annotation_per_violation(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out = call(
        "--no-config", "--format", "github", "gov006_bad.py", "--select", "GOV006", capsys=capsys
    )
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0] == (
        "::error file=gov006_bad.py,line=7,col=21,title=GOV006 layer-skip::"
        "ToolRunner used outside its allowed callers; go through PluginExecutionService"
    )


def test_text_output_and_statistics(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out = call(
        "--no-config", "--statistics", "gov005_bad.py", "--select", "GOV005", capsys=capsys
    )
    lines = out.strip().splitlines()
    assert code == 1
    assert (
        lines[0] == "gov005_bad.py:6:5: GOV005 Job status written outside the state machine; "
        "use the Job transition methods"
    )
    assert "   16  GOV005  job-status-outside-state-machine" in lines
    assert lines[-1] == "Found 16 violation(s) in 1 file(s) (1 files scanned)."


def test_a_clean_scan_exits_zero(capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    code, out = call("--no-config", "gov005_good.py", "--select", "GOV005", capsys=capsys)
    assert (code, out.strip()) == (0, "No violations (1 files scanned).")


def test_output_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(FIXTURES)
    target = tmp_path / "report.json"
    code, out = call(
        "--no-config", "--format", "json", "--output", str(target), "gov006_bad.py", capsys=capsys
    )
    assert code == 1
    assert out == ""
    assert json.loads(target.read_text())["files_scanned"] == 1


def test_list_rules_and_explain(capsys):
    code, out = call("--list-rules", capsys=capsys)
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == CODES
    code, out = call("--explain", "gov001", capsys=capsys)
    assert code == 0
    assert out.startswith("GOV001 ungoverned-plugin-call")
    assert "Bad::" in out
    assert "Good::" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--explain", "GOV999"),
        ("no/such/path",),
        ("--select", "XYZ1", "."),
        ("--jobs", "0", "."),
        ("--config", "missing.toml", "."),
        ("--config", "a.toml", "--no-config", "."),
        ("--cache-dir", "elsewhere", "--no-cache", "."),
        ("--format", "xml", "."),
    ],
)
def test_usage_errors_exit_two(args):
    code, out, err = scan(*args)
    assert code == 2, (out, err)
    assert err.strip()


def test_broken_files_are_reported_and_the_rest_still_scanned(tmp_path):
    (tmp_path / "syntax.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "binary.py").write_bytes(b"\x00\x01\x02\xff\xfe")
    (tmp_path / "latin1.py").write_bytes(b"name = '\xe9t\xe9'\n")
    (tmp_path / "late.py").write_text("x = 1\ny = (\n")
    (tmp_path / "good.py").write_text("def f(plugin):\n    return plugin.run(1)\n")
    code, out, _ = scan("--no-config", "--format", "json", ".", cwd=tmp_path)
    report = json.loads(out)
    found = {(v["path"], v["line"], v["rule"]) for v in report["violations"]}
    assert code == 1
    assert report["files_scanned"] == 5
    assert ("syntax.py", 1, "GOV000") in found
    assert ("binary.py", 1, "GOV000") in found
    assert ("latin1.py", 1, "GOV000") in found
    assert ("late.py", 2, "GOV000") in found
    assert ("good.py", 2, "GOV001") in found


def test_an_unreadable_file_exits_two_after_scanning_the_rest(tmp_path):
    (tmp_path / "fine.py").write_text("def f(plugin):\n    return plugin.run(1)\n")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "gone.py")  # unreadable, even for root
    code, out, err = scan("--no-config", "--select", "GOV001", ".", cwd=tmp_path)
    assert code == 2
    assert "fine.py:2:12: GOV001" in out
    assert "unreadable: dangling.py" in err


def _project_copy(tmp_path: Path) -> Path:
    """The project's scanner configuration and runner, with one new bypass, in ``tmp_path``."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    runtime = tmp_path / "plugins" / "runtime"
    runtime.mkdir(parents=True)
    for module in (
        "__init__.py",
        "runtime/__init__.py",
        "runtime/tool_runner.py",
        "runtime/plugin_side.py",
    ):  # the runner and its delegate, importable
        shutil.copy(ROOT / "plugins" / module, tmp_path / "plugins" / module)
    (tmp_path / "execution").mkdir()
    (tmp_path / "execution" / "shortcut.py").write_text(
        "from plugins.registry import get_registry\n\n\n"
        "def shortcut(x):\n"
        "    plugin = get_registry().get_plugin('text_stats')\n"
        "    return plugin.run(x)\n"
    )
    return tmp_path


def test_a_new_violation_is_found_by_both_commands_and_the_system_check(tmp_path, settings):
    project = _project_copy(tmp_path)
    expected = (
        "execution/shortcut.py:6:12: GOV001 plugin.run referenced outside ToolRunner; "
        "execute plugins through ToolRunner"
    )
    for command in (MANAGE, MODULE):
        code, out, _ = scan(".", cwd=project, command=command)
        assert code == 1
        assert out.splitlines()[0] == expected
        assert "Found 1 violation(s)" in out
    from governance_scanner.checks import check_governance

    settings.BASE_DIR = project
    (error,) = check_governance()
    assert error.id == "governance.GOV001"
    assert error.msg.startswith("execution/shortcut.py:6:12:")
    # scan_violations runs no system checks: another folder still scans clean.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "clean.py").write_text("x = 1\n")
    code, out, err = scan("--no-config", "--select", "GOV001", ".", cwd=tmp_path / "elsewhere")
    assert (code, err) == (0, "")


def test_the_module_entry_gives_the_same_report_without_importing_django():
    args = ("--no-config", "--format", "json", "gov001_bad.py", "suppressions.py", "myplugins")
    managed = scan(*args)
    alone = scan(*args, command=MODULE)
    assert managed == alone
    assert alone[0] == 1
    probe = (
        "import sys\n"
        "from governance_scanner.cli import main\n"
        "code = main(['--no-config', '--format', 'sarif', '--output', '/dev/null', '.'])\n"
        "web = [name for name in ('django', 'rest_framework', 'drf_spectacular') "
        "if name in sys.modules]\n"
        "print(code, web)\n"
    )
    code, out, err = scan("-c", probe, command=[sys.executable])
    assert (code, out.strip(), err) == (0, "1 []", "")


def test_the_module_entry_reports_usage_errors_with_exit_two():
    code, out, err = scan("--select", "XYZ1", ".", command=MODULE)
    assert (code, out) == (2, "")
    assert "unknown rule code 'XYZ1'" in err
    code, out, _ = scan("--explain", "gov004", command=MODULE)
    assert code == 0
    assert out.startswith("GOV004 metrics-not-in-finally")


def test_the_project_itself_scans_clean_and_so_does_the_system_check():
    for command in (MANAGE, MODULE):
        code, out, _ = scan(cwd=ROOT, command=command)
        assert code == 0, out
        assert out.startswith("No violations")
    from governance_scanner.checks import check_governance

    assert check_governance() == []


SARIF_MULTITOOL = os.environ.get("SARIF_MULTITOOL")  # .ci/run installs it with npm


@pytest.mark.skipif(
    not SARIF_MULTITOOL,
    reason="set SARIF_MULTITOOL to Microsoft's Sarif.Multitool (npm @microsoft/sarif-multitool)",
)
def test_microsofts_sarif_validator_accepts_the_output_with_githubs_rules(tmp_path):
    report = tmp_path / "governance.sarif"
    code, _, _ = scan(
        "--no-config",
        "--format",
        "sarif",
        "--output",
        str(report),
        "gov001_bad.py",
        "suppressions.py",
        "myplugins",
    )
    assert code == 1
    validation = tmp_path / "validation.sarif"
    completed = subprocess.run(
        [
            str(SARIF_MULTITOOL),
            "validate",
            str(report),
            "--rule-kind",
            "Sarif;Gh",
            "--output",
            str(validation),
            "--log",
            "ForceOverwrite",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    problems = json.loads(validation.read_text())["runs"][0].get("results", [])
    assert problems == []
