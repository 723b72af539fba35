"""The on-disk cache: a warm run analyses only what changed and reports what a cold run does."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import governance_scanner.scanner as scanner_module
from governance_scanner.cache import CACHE_DIR_ENV, CACHE_DIR_NAME
from governance_scanner.config import load_config
from governance_scanner.scanner import Scanner
from tests.governance_scanner.conftest import FIXTURES, ROOT

CALLER = "wordcount/report.py"
BASE = "wordcount/plugins/base.py"


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the wordcount project, free to edit."""
    target = tmp_path / "project"
    shutil.copytree(FIXTURES / "wordcount", target)
    return target


@pytest.fixture
def analysed(monkeypatch) -> list[str]:
    """The files each scan really analyses (parses), as opposed to taking from the cache."""
    seen: list[str] = []
    real = scanner_module.analyze_file

    def spy(task, options, data=None, **kwargs):
        seen.append(task.display)
        return real(task, options, data, **kwargs)

    monkeypatch.setattr(scanner_module, "analyze_file", spy)
    return seen


def scan(project: Path, cache: Path | None, *paths: str, jobs: int = 1, **overrides):
    config = load_config(project / "pyproject.toml", cwd=project).with_overrides(**overrides)
    scanner = Scanner(config, cwd=project, cache_dir=cache, jobs=jobs, parallel_threshold=1)
    result = scanner.scan([project / path for path in paths] or [project])
    return [(f.path, f.line, f.rule) for f in result.violations]


def index_file(cache: Path) -> Path:
    (found,) = cache.glob("index-*.json")
    return found


def test_a_warm_run_analyses_nothing_and_reports_the_same(project, cache_dir, analysed):
    cold = scan(project, cache_dir)
    assert len(analysed) == len(list(project.rglob("*.py"))) == 8
    assert cold == [(CALLER, 10, "GOV001")]
    analysed.clear()
    assert scan(project, cache_dir) == cold
    assert scan(project, cache_dir, CALLER) == cold
    assert analysed == []


def test_editing_a_base_class_so_a_subclass_is_no_plugin_is_noticed(project, cache_dir, analysed):
    """pre-commit's case: only the caller is given, the base class changed in another file."""
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]
    base = project / BASE
    base.write_text(base.read_text().replace("class TextPlugin(Plugin):", "class TextPlugin:"))
    analysed.clear()
    assert scan(project, cache_dir, CALLER) == []
    assert analysed == [BASE]
    # And back: the subclass is a plugin again.
    base.write_text(base.read_text().replace("class TextPlugin:", "class TextPlugin(Plugin):"))
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]


def test_an_edit_that_keeps_size_and_mtime_is_still_noticed(project, cache_dir):
    """Keyed by content, not by stat: a same-length edit within one timestamp counts."""
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]
    base = project / BASE
    before = base.stat()
    text = base.read_text()
    edited = text.replace("class TextPlugin(Plugin):", "class TextPlugin(object):")
    assert len(edited) == len(text)
    base.write_text(edited)
    os.utime(base, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert scan(project, cache_dir, CALLER) == []


def test_a_deleted_file_is_forgotten(project, cache_dir):
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]
    (project / BASE).unlink()
    assert scan(project, cache_dir, CALLER) == []
    stored = json.loads(index_file(cache_dir).read_text())["files"]
    assert str(project / CALLER) in stored
    assert str(project / BASE) not in stored


def test_an_edit_of_the_scanned_file_itself_is_noticed(project, cache_dir):
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]
    caller = project / CALLER
    caller.write_text(caller.read_text().replace("WordCountPlugin().run(", "summary(\n"))
    assert scan(project, cache_dir, CALLER) == []


def test_a_file_that_changes_its_place_in_the_project_is_analysed_again(project, cache_dir):
    """Same content, now a state-machine module: the entry is keyed by the file's role too."""
    (project / "wordcount" / "jobs.py").write_text("def finish(job):\n    job.status = 'done'\n")
    assert scan(project, cache_dir, select=("GOV005",)) == [("wordcount/jobs.py", 2, "GOV005")]
    machines = ("wordcount/jobs.py",)
    assert scan(project, cache_dir, select=("GOV005",), state_machine_modules=machines) == []
    assert len(list(cache_dir.glob("index-*.json"))) == 1  # one cache: not an options change


def test_options_a_files_analysis_depends_on_get_their_own_cache(project, cache_dir):
    assert scan(project, cache_dir, CALLER) == [(CALLER, 10, "GOV001")]
    assert scan(project, cache_dir, CALLER, plugin_methods=("execute",)) == []
    assert len(list(cache_dir.glob("index-*.json"))) == 2
    # Base classes are joined across files after the cache, so they need none of their own.
    assert scan(project, cache_dir, CALLER, plugin_base_classes=("Unrelated",)) == []
    assert len(list(cache_dir.glob("index-*.json"))) == 2


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"\x00\xff not json",
        b'{"format": 1, "files": {"',  # torn
        b'{"format": 1, "files": []}',
        b'{"format": 999, "files": {}}',
        b"[" * 100_000,
    ],
    ids=["empty", "binary", "torn", "wrong-shape", "other-format", "too-deep"],
)
def test_a_corrupt_cache_is_ignored_and_replaced(project, cache_dir, analysed, damage):
    expected = scan(project, cache_dir)
    index_file(cache_dir).write_bytes(damage)
    analysed.clear()
    assert scan(project, cache_dir) == expected
    assert len(analysed) == 8
    analysed.clear()
    assert scan(project, cache_dir) == expected
    assert analysed == []


def test_malformed_entries_are_analysed_again(project, cache_dir, analysed):
    expected = scan(project, cache_dir)
    path = index_file(cache_dir)
    data = json.loads(path.read_text())
    entry = data["files"][str(project / CALLER)]
    entry[2][0] = [["ten", 14, "GOV001", "message"]]  # a line that is no number
    data["files"][str(project / BASE)][2] = {"not": "a list"}
    path.write_text(json.dumps(data))
    analysed.clear()
    assert scan(project, cache_dir) == expected
    assert sorted(analysed) == [BASE, CALLER]


def test_an_unwritable_cache_folder_is_not_fatal(project, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    assert scan(project, blocked / "cache") == [(CALLER, 10, "GOV001")]


def test_parallel_workers_fill_the_same_cache(project, cache_dir, monkeypatch):
    """With --jobs 2 the analyses come back from worker processes, digests included."""
    cold = scan(project, cache_dir, jobs=2)
    assert cold == [(CALLER, 10, "GOV001")]

    def analyze_file(*args, **kwargs):
        raise AssertionError("a warm run analysed a file")

    monkeypatch.setattr(scanner_module, "analyze_file", analyze_file)
    assert scan(project, cache_dir, jobs=2) == cold


# The command ----------------------------------------------------------------------------


def command(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "governance_scanner", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_keeps_its_cache_at_the_project_root_unless_told(project):
    env = {k: v for k, v in os.environ.items() if k != CACHE_DIR_ENV}
    (project / "wordcount" / "sub").mkdir()
    first = command("../report.py", cwd=project / "wordcount" / "sub", env=env)
    assert first.returncode == 1
    folder = project / CACHE_DIR_NAME
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (
        (folder / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    assert len(list(folder.glob("index-*.json"))) == 1
    assert command(CALLER, cwd=project, env=env).stdout.startswith(f"{CALLER}:10:14: GOV001")
    assert len(list(folder.glob("index-*.json"))) == 1


def test_no_cache_reads_and_writes_none(project, tmp_path):
    folder = tmp_path / "cache"
    env = {**os.environ, CACHE_DIR_ENV: str(folder)}
    assert command("--no-cache", cwd=project, env=env).returncode == 1
    assert not folder.exists()
    assert not (project / CACHE_DIR_NAME).exists()
    assert command("--cache-dir", str(tmp_path / "other"), cwd=project, env=env).returncode == 1
    assert list((tmp_path / "other").glob("index-*.json"))
    assert not folder.exists()


def test_concurrent_runs_never_read_a_torn_cache(project, tmp_path):
    """pre-commit runs hooks on batches of files in parallel, all on one cache."""
    env = {**os.environ, CACHE_DIR_ENV: str(tmp_path / "cache")}
    files = [CALLER, BASE, "wordcount/plugins/counting.py", "wordcount/runtime/runner.py"]
    for _ in range(3):
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "governance_scanner", "--format", "json", path],
                cwd=project,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path in files * 2
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [err for _, err in outputs] == [""] * len(runs)
        reports = [json.loads(out) for out, _ in outputs]
        assert [len(r["violations"]) for r in reports] == [1, 0, 0, 0] * 2
        assert json.loads(index_file(tmp_path / "cache").read_text())["format"] == 1
        (project / BASE).write_text((project / BASE).read_text() + "\n")  # and again, cold
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_files_of_other_scanner_versions_are_removed_when_the_cache_is_written(project, cache_dir):
    stale = cache_dir / "index-0000000000000000-0000000000000000.json"
    stale.write_text('{"format": 1, "files": {}}')
    scan(project, cache_dir)
    assert not stale.exists()
    assert len(list(cache_dir.glob("index-*.json"))) == 1
