import pytest
from pydantic import BaseModel

from plugins.contract import (
    MAX_PLUGIN_NAME_LENGTH,
    Plugin,
    check_plugin_contract,
    contract_problems,
    plugin_label,
)
from plugins.errors.exceptions import PluginContractError, PluginNotFoundError
from plugins.registry import PluginRegistry
from tests.plugins.sample_plugins import EchoInput, EchoOutput, EchoPlugin

pytestmark = pytest.mark.any_database


def make_plugin(**overrides):
    attributes = {
        "name": "valid_name",
        "version": "1.0",
        "description": "d",
        "Input": EchoInput,
        "Output": EchoOutput,
        "run": lambda self, payload: {"echoed": "x"},
    }
    attributes.update(overrides)
    attributes = {key: value for key, value in attributes.items() if value is not ...}
    return type("Candidate", (Plugin,), attributes)


def test_a_valid_plugin_passes():
    assert check_plugin_contract(EchoPlugin) is EchoPlugin
    assert contract_problems(make_plugin()) == []


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"name": "Bad-Name"}, "must match [a-z0-9_]+"),
        ({"name": ""}, "must match [a-z0-9_]+"),
        ({"name": "a" * 101}, "at most 100"),
        ({"name": 42}, "'name' must be a string"),
        ({"name": ...}, "'name' must be a string"),
        ({"version": ""}, "'version' must be a non-empty string"),
        ({"version": ...}, "'version' must be a non-empty string"),
        ({"description": None}, "'description' must be a string"),
        ({"Input": ...}, "'Input' must be a pydantic BaseModel subclass"),
        ({"Input": dict}, "'Input' must be a pydantic BaseModel subclass"),
        ({"Output": EchoOutput(echoed="x")}, "'Output' must be a pydantic BaseModel subclass"),
        ({"run": ...}, "'run' must be overridden"),
        ({"timeout_s": 0}, "'timeout_s' must be a positive number"),
        ({"timeout_s": True}, "'timeout_s' must be a positive number"),
        ({"max_concurrency": 0}, "'max_concurrency' must be a positive integer or None"),
        ({"max_concurrency": 1.5}, "'max_concurrency' must be a positive integer or None"),
        ({"max_concurrency": True}, "'max_concurrency' must be a positive integer or None"),
    ],
)
def test_malformed_plugins_are_rejected_at_registration(overrides, problem):
    candidate = make_plugin(**overrides)
    with pytest.raises(PluginContractError) as excinfo:
        PluginRegistry().register(candidate)
    assert problem in str(excinfo.value)


def test_every_problem_is_reported_at_once():
    problems = contract_problems(make_plugin(name="X", version="", run=...))
    assert len(problems) == 3


def test_non_plugin_classes_and_objects_are_rejected():
    class Lookalike:
        name = "lookalike"

    for candidate in (Lookalike, Lookalike(), "text_stats", BaseModel):
        with pytest.raises(
            PluginContractError, match=r"not a subclass of plugins\.contract\.Plugin"
        ):
            check_plugin_contract(candidate)


def test_duplicate_names_are_rejected_but_the_same_class_twice_is_a_no_op():
    registry = PluginRegistry()
    first = registry.register(EchoPlugin)
    assert registry.register(EchoPlugin) is first
    with pytest.raises(PluginContractError, match="already registered"):
        registry.register(make_plugin(name="echo"))


def test_run_inherited_from_a_plugin_parent_counts_as_overridden():
    class Child(EchoPlugin):
        name = "child"

    assert contract_problems(Child) == []


def test_a_model_without_a_json_schema_is_refused_at_registration():
    from pydantic import ConfigDict

    class Opaque:  # pydantic can check it, but cannot describe it
        pass

    class OpaqueInput(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        value: Opaque

    class OpaquePlugin(EchoPlugin):
        name = "opaque"
        Input = OpaqueInput  # type: ignore[assignment]

    problems = contract_problems(OpaquePlugin)
    assert any(problem.startswith("'Input' has no JSON Schema") for problem in problems)


def test_a_requested_name_is_labelled_as_text_no_longer_than_a_plugin_name():
    assert plugin_label("echo") == "echo"
    assert plugin_label("n" * 150) == "n" * MAX_PLUGIN_NAME_LENGTH
    assert plugin_label(["x"] * 50) == repr(["x"] * 50)[:MAX_PLUGIN_NAME_LENGTH]


def test_an_unknown_name_is_shown_cut_and_only_text_names_the_plugin():
    registry = PluginRegistry()
    with pytest.raises(PluginNotFoundError) as long_name:
        registry.get_entry("n" * 150)
    assert long_name.value.plugin == "n" * MAX_PLUGIN_NAME_LENGTH
    assert long_name.value.message == f"No plugin named {'n' * 100!r} is registered"
    with pytest.raises(PluginNotFoundError) as not_text:
        registry.get_entry(["x"] * 50)  # type: ignore[arg-type]
    assert not_text.value.plugin is None
    assert repr(repr(["x"] * 50)[:100]) in not_text.value.message
