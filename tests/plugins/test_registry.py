from importlib.metadata import EntryPoint

import pytest

from plugins.errors.exceptions import PluginNotFoundError, PluginUnavailableError
from plugins.models import PluginState
from plugins.registry import ENTRY_POINT_GROUP, PluginRegistry, get_registry
from tests.plugins.sample_plugins import EchoPlugin, NoOpPlugin

pytestmark = pytest.mark.any_database


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_discovers_plugins_from_entry_points():
    registry = PluginRegistry()
    registry.discover(
        entry_points_=[entry_point("echo", "tests.plugins.sample_plugins:EchoPlugin")]
    )
    plugin = registry.get_plugin("echo")
    assert isinstance(plugin, EchoPlugin)
    assert registry.get_entry("echo").source.startswith("entry point echo")


def test_discovers_plugins_from_dotted_paths():
    registry = PluginRegistry()
    registry.discover(entry_points_=[], dotted_paths=["tests.plugins.sample_plugins.NoOpPlugin"])
    assert isinstance(registry.get_plugin("noop"), NoOpPlugin)


def test_a_plugin_whose_import_raises_is_listed_unavailable_and_others_still_load():
    registry = PluginRegistry()
    registry.discover(
        entry_points_=[
            entry_point("broken", "tests.plugins.broken_import:Whatever"),
            entry_point("echo", "tests.plugins.sample_plugins:EchoPlugin"),
        ],
        dotted_paths=["no.such.module.Plugin", "tests.plugins.sample_plugins.NoOpPlugin"],
    )
    status = {entry.name: entry for entry in registry.get_status()}
    assert status["broken"].state == PluginState.UNAVAILABLE
    assert "import failed: ImportError: this plugin needs a library" in status["broken"].reason
    assert status["Plugin"].state == PluginState.UNAVAILABLE
    assert "ModuleNotFoundError" in status["Plugin"].reason
    assert [p.name for p in registry.list_plugins()] == ["echo", "noop"]
    with pytest.raises(PluginUnavailableError, match="import failed"):
        registry.get_plugin("broken")


def test_a_discovered_plugin_breaking_the_contract_is_unavailable_with_the_reason():
    registry = PluginRegistry()
    registry.discover(
        entry_points_=[entry_point("model", "tests.plugins.sample_plugins:EchoInput")]
    )
    (entry,) = registry.get_status()
    assert entry.state == PluginState.UNAVAILABLE
    assert "not a subclass of plugins.contract.Plugin" in entry.reason


def test_a_duplicate_discovered_name_does_not_replace_the_working_plugin():
    registry = PluginRegistry()
    registry.register(EchoPlugin)
    registry.discover(
        entry_points_=[entry_point("echo", "tests.plugins.sample_plugins:ImpostorEchoPlugin")]
    )
    assert type(registry.get_plugin("echo")) is EchoPlugin
    impostor = [entry for entry in registry.get_status() if entry.name != "echo"]
    assert len(impostor) == 1
    assert impostor[0].name.startswith("echo@entry point echo")
    assert impostor[0].state == PluginState.UNAVAILABLE
    assert "already registered" in impostor[0].reason


def test_unknown_names_raise_plugin_not_found_and_are_never_imported():
    registry = PluginRegistry()
    for name in ("missing", "os.system", "tests.plugins.sample_plugins.EchoPlugin", 42, None):
        with pytest.raises(PluginNotFoundError):
            registry.get_plugin(name)  # type: ignore[arg-type]
    assert registry.get_status() == []


def test_the_project_registers_its_example_plugins_through_entry_points(settings):
    settings.PLUGINS = ["tests.plugins.sample_plugins.NoOpPlugin"]
    registry = get_registry()
    assert registry is get_registry()
    names = {plugin.name for plugin in registry.list_plugins()}
    assert {"text_stats", "image_metadata", "noop"} <= names
    assert registry.get_entry("text_stats").source.startswith("entry point text_stats")
