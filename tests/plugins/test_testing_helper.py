"""plugins.testing outside a project: the minimal Django it configures, and only then.

Its use with no settings at all is tested for real in subprocesses: a generated plugin
package's own tests (test_startplugin.py) and scripts (test_unguarded_script.py).
"""

import pytest
from django.conf import settings as django_settings

from plugins.runtime.isolation.process import _exposed_by, _interpreter_paths
from plugins.testing import configure_django, minimal_settings

pytestmark = pytest.mark.any_database


def test_a_configured_project_keeps_its_settings():
    configure_django()
    assert django_settings.SETTINGS_MODULE == "tests.settings"
    assert "execution" in django_settings.INSTALLED_APPS


def test_the_minimal_settings_have_what_the_runtime_reads():
    minimal = minimal_settings()
    assert minimal["DATABASES"] == {}
    assert minimal["INSTALLED_APPS"] == ["plugins"]
    assert minimal["PLUGIN_METRICS_ENABLED"] is False
    assert minimal["PLUGIN_SANDBOX"] == "on"
    assert len(minimal["SECRET_KEY"]) >= 50
    assert minimal_settings()["SECRET_KEY"] != minimal["SECRET_KEY"]


def test_the_sandbox_can_still_read_the_installed_packages(tmp_path, monkeypatch, settings):
    """The folder kept from hosts is where the tests run, not where the runtime is installed."""
    monkeypatch.chdir(tmp_path)
    settings.BASE_DIR = minimal_settings()["BASE_DIR"]
    assert tmp_path == settings.BASE_DIR
    assert _exposed_by(_interpreter_paths()) is None
    # Had it been the runtime's folder, a runtime installed in site-packages would refuse
    # every plugin: its hosts must read that folder.
    settings.BASE_DIR = _interpreter_paths()[-1]
    assert _exposed_by(_interpreter_paths()) is not None


def test_sandbox_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PLUGIN_SANDBOX", "off")
    monkeypatch.setenv("PLUGIN_SANDBOX_USER", "plugins")
    minimal = minimal_settings()
    assert (minimal["PLUGIN_SANDBOX"], minimal["PLUGIN_SANDBOX_USER"]) == ("off", "plugins")
