import pytest

from governance_scanner.config import ConfigError, ScannerConfig, load_config
from governance_scanner.scanner import Scanner
from tests.governance_scanner.conftest import located, run_scan


def test_suppressions_need_the_right_code_on_the_same_line_and_a_reason():
    result = run_scan("suppressions.py", select=("GOV001", "GOV005", "GOV007"))
    assert located(result) == {
        (3, 5, "GOV001"),  # suppression without a reason suppresses nothing...
        (3, 26, "GOV007"),  # ...and is itself reported
        (4, 5, "GOV001"),  # a suppression for another rule
        (6, 5, "GOV001"),  # a suppression on the line above
        (7, 5, "GOV001"),
        (7, 26, "GOV007"),  # unknown code
        (8, 5, "GOV001"),
        (8, 26, "GOV007"),  # malformed
    }
    assert {(s.finding.line, s.finding.rule, s.reason) for s in result.suppressed} == {
        (2, "GOV001", "exercises the runtime guard"),
        (9, "GOV005", "two rules, one reason"),
    }
    messages = {f.line: f.message for f in result.violations if f.rule == "GOV007"}
    assert "without a reason" in messages[3]
    assert "unknown code GOV999" in messages[7]
    assert "malformed" in messages[8]


RUNNER = """\
class ToolRunner:
    def run(self, name, payload):
        plugin = self.registry.get_plugin(name)
        try:
            return plugin.run(payload)
        finally:
            self.registry.update_execution_metrics(name)
"""


def write(tmp_path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def test_configuration_is_read_from_pyproject_relative_to_its_folder(tmp_path):
    write(
        tmp_path,
        {
            "pyproject.toml": (
                "[tool.governance_scanner]\n"
                'tool_runner_module = "core/runner.py"\n'
                'extend-exclude = ["generated"]\n'
                'per-file-ignores = {"scripts/*" = ["GOV001"]}\n'
            ),
            "core/runner.py": RUNNER,
            "app.py": "def f(plugin):\n    plugin.run(1)\n",
            "scripts/once.py": "def f(plugin):\n    plugin.run(1)\n",
            "generated/out.py": "def f(plugin):\n    plugin.run(1)\n",
            ".venv/lib.py": "def f(plugin):\n    plugin.run(1)\n",
        },
    )
    config = load_config(None, cwd=tmp_path / "core")  # found by walking up
    assert config.root == tmp_path
    result = Scanner(config, cwd=tmp_path).scan([tmp_path])
    assert [(f.path, f.rule) for f in result.violations] == [("app.py", "GOV001")]
    assert result.files_scanned == 3  # app.py, core/runner.py, scripts/once.py


def test_exclude_replaces_the_defaults(tmp_path):
    write(tmp_path, {".venv/lib.py": "x = 1\n", "skip/me.py": "x = 1\n", "keep.py": "x = 1\n"})
    config = ScannerConfig(root=tmp_path, exclude=("skip",), select=("GOV001",))
    assert Scanner(config, cwd=tmp_path).scan([tmp_path]).files_scanned == 2


def test_select_and_ignore_filter_codes_and_prefixes():
    every = run_scan("gov005_bad.py", "gov006_bad.py")
    assert {f.rule for f in every.violations} >= {"GOV005", "GOV006"}
    only = run_scan("gov005_bad.py", "gov006_bad.py", select=("GOV006",))
    assert {f.rule for f in only.violations} == {"GOV006"}
    ignored = run_scan("gov005_bad.py", "gov006_bad.py", ignore=("GOV00",))
    assert ignored.violations == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.governance_scanner]\nselect = 'GOV001'\n", "must be a list of strings"),
        ("[tool.governance_scanner]\ncolour = ['red']\n", "unknown key 'colour'"),
        ("[tool.governance_scanner]\ntool_runner_module = 3\n", "must be a non-empty string"),
        ("[tool.governance_scanner]\nper-file-ignores = ['x']\n", "must be a table"),
        ("[tool.governance_scanner\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "pyproject.toml", cwd=tmp_path)


def test_unknown_codes_in_configuration_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown rule code 'GOV123'"):
        Scanner(ScannerConfig(root=tmp_path, select=("GOV123",)))
    with pytest.raises(ConfigError, match="per-file-ignores"):
        Scanner(ScannerConfig(root=tmp_path, per_file_ignores={"x/*": ("NOPE",)}))


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", cwd=tmp_path)
