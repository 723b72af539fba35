"""``manage.py startplugin``: the package it writes installs, passes its own tests, is listed.

The generated package is installed with pip from this checkout's environment,
offline (``--no-index``, no build isolation): its dependency on the host
(``governed-plugin-execution``) must be satisfied by this checkout, installed
editable. Its tests run in a subprocess with no conftest and no Django settings, as
in an author's own repository; the server then lists the plugin at ``/v1/plugins``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.core.management.templates import TemplateCommand

import plugins.scaffold
from plugins.management.commands.startplugin import Command as StartPlugin
from plugins.scaffold import HOST_DISTRIBUTION, host_requirement
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.any_database

GENERATED = {
    "README.md",
    "pyproject.toml",
    "tests/test_word_count.py",
    "word_count_plugin/__init__.py",
    "word_count_plugin/plugin.py",
}


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.fixture
def readable_tmp():
    """A temporary folder plugin hosts can read: run as root, they run as nobody."""
    folder = Path(tempfile.mkdtemp(prefix="startplugin-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    "name",
    ["WordCount", "word-count", "word count", "", "1st_plugin", "_private", "wörd", "a" * 101],
)
def test_a_name_that_is_no_plugin_name_writes_nothing(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=re.escape("([a-z0-9_]+), starting with a letter")):
        call_command("startplugin", name)
    with pytest.raises(CommandError, match="is not a plugin name"):
        call_command("startplugin", name, str(tmp_path / "target"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["class", "import", "none"])
def test_a_python_keyword_writes_nothing(tmp_path, name):
    target = tmp_path / "target"
    if name == "none":  # a keyword only capitalised: a good name
        call_command("startplugin", name, str(target))
        assert (target / "none_plugin" / "plugin.py").is_file()
        return
    with pytest.raises(CommandError, match=f"'{name}' is a Python keyword"):
        call_command("startplugin", name, str(target))
    assert not target.exists()


def test_a_directory_that_is_not_empty_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="is not empty"):
        call_command("startplugin", "word_count", str(tmp_path))
    assert files_under(tmp_path) == {"notes.txt"}
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_is_no_directory(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(CommandError, match="exists and is not a directory"):
        call_command("startplugin", "word_count", str(tmp_path / "taken"))
    assert files_under(tmp_path) == {"taken"}


def test_the_default_directory_is_named_after_the_distribution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call_command("startplugin", "word_count")
    assert files_under(tmp_path / "word-count-plugin") == GENERATED


def test_an_empty_directory_is_written_into(tmp_path):
    call_command("startplugin", "word_count", str(tmp_path))
    assert files_under(tmp_path) == GENERATED
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert 'name = "word-count-plugin"' in pyproject
    assert 'word_count = "word_count_plugin.plugin:WordCountPlugin"' in pyproject
    assert f'"{host_requirement()}"' in pyproject
    assert "[project.entry-points.governed_plugins]" in pyproject
    plugin = (tmp_path / "word_count_plugin" / "plugin.py").read_text()
    for line in (
        "class WordCountInput(BaseModel):",
        "class WordCountOutput(BaseModel):",
        "class WordCountPlugin(Plugin):",
        'name = "word_count"',
        "def run(self, payload: WordCountInput) -> WordCountOutput:",
    ):
        assert line in plugin


def test_the_host_requirement_is_a_compatible_range_of_the_installed_version(monkeypatch):
    installed = version(HOST_DISTRIBUTION)
    major, minor = (int(part) for part in installed.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    assert host_requirement() == f"{HOST_DISTRIBUTION}>={major}.{minor},<{upper}"
    for released, expected in (
        ("0.1.0", ">=0.1,<0.2"),
        ("0.12.3", ">=0.12,<0.13"),
        ("2.3.1", ">=2.3,<3"),
    ):
        monkeypatch.setattr(plugins.scaffold, "version", lambda name, v=released: v)
        assert host_requirement() == HOST_DISTRIBUTION + expected


def test_the_host_distribution_is_this_checkout(tmp_path):
    """What pip resolves ``governed-plugin-execution`` to here: this checkout, editable."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--editable", "--format=json"],
        cwd=tmp_path,  # not the checkout, whose egg-info would be found first
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    editable = {item["name"]: item for item in json.loads(listed.stdout)}
    assert editable[HOST_DISTRIBUTION]["editable_project_location"] == str(ROOT)


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """This environment's pip, offline: nothing is downloaded, nothing is built in isolation."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            *args,
            "--no-index",
            "--no-build-isolation",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def authors_environment(site: Path) -> dict[str, str]:
    """A plugin author's shell: the package installed, no Django settings, no secrets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DATABASE_URL", "PYTEST_ADDOPTS"}
        and not name.startswith(("PLUGIN_", "COV_CORE_"))
    }
    return {**env, "PYTHONPATH": str(site)}


LIST_PLUGINS = """
import json
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test.utils import setup_test_environment
from rest_framework.test import APIClient

setup_test_environment()
client = APIClient()
client.force_authenticate(get_user_model()(username="operator", is_staff=True, is_superuser=True))
response = client.get("/v1/plugins")
print(json.dumps({"status": response.status_code, "plugins": response.json()}))
"""


def test_the_generated_package_installs_passes_its_tests_and_is_listed(db, readable_tmp):
    source, site = readable_tmp / "word-count-plugin", readable_tmp / "site"
    call_command("startplugin", "word_count", str(source))
    assert not list(source.rglob("conftest.py"))

    # Its dependencies, the host's own included, resolve against what is installed here.
    report = readable_tmp / "report.json"
    resolved = pip("install", "--dry-run", "--report", str(report), str(source))
    assert resolved.returncode == 0, resolved.stderr
    to_install = json.loads(report.read_text())["install"]
    assert [item["metadata"]["name"] for item in to_install] == ["word-count-plugin"]
    assert any(
        requirement.startswith(HOST_DISTRIBUTION)
        for requirement in to_install[0]["metadata"]["requires_dist"]
    )

    installed = pip("install", "--no-deps", "--target", str(site), str(source))
    assert installed.returncode == 0, installed.stderr
    shutil.rmtree(source / "word_count_plugin")  # its tests must use the installed package

    tests = subprocess.run(
        [str(Path(sys.executable).with_name("pytest")), "-p", "no:cacheprovider", "-v"],
        cwd=source,
        env=authors_environment(site),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout
    assert "configfile: pyproject.toml" in tests.stdout  # the package's, not this project's

    listed = subprocess.run(
        [sys.executable, "-c", LIST_PLUGINS],
        cwd=ROOT,
        env=subprocess_env(PYTHONPATH=str(site), PLUGIN_WARM_HOSTS="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    plugin = {entry["name"]: entry for entry in answer["plugins"]}["word_count"]
    assert plugin["state"] == "AVAILABLE", plugin
    assert plugin["version"] == "0.1.0"
    assert set(plugin["input_schema"]["properties"]) == {"text"}
    assert set(plugin["output_schema"]["properties"]) == {"characters", "words"}


def test_without_the_host_installed_the_dependency_is_unpinned_and_said_so(tmp_path, monkeypatch):
    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(plugins.scaffold, "version", not_installed)
    errors = io.StringIO()
    call_command("startplugin", "word_count", str(tmp_path), stderr=errors)
    assert f'"{HOST_DISTRIBUTION}",' in (tmp_path / "pyproject.toml").read_text()
    assert "is not installed as a distribution here" in errors.getvalue()


def test_a_failure_while_writing_leaves_no_directory_behind(tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(TemplateCommand, "handle", fails)
    with pytest.raises(OSError, match="disk full"):
        call_command("startplugin", "word_count", str(tmp_path / "new"))
    assert list(tmp_path.iterdir()) == []


def test_templatecommands_own_name_check_is_the_plugins():
    command = StartPlugin()
    command.validate_name("json")  # startapp refuses importable module names; a plugin need not
    with pytest.raises(CommandError, match="is not a plugin name"):
        command.validate_name("Json")
