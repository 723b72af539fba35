import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from plugins.errors.exceptions import UngovernedExecutionError
from plugins.registry import PluginRegistry
from plugins.runtime.limits import ExecutionLimits
from plugins.runtime.tool_runner import ToolRunner
from plugins.testing import run_plugin
from tests.plugins.sample_plugins import EchoInput, EchoOutput, EchoPlugin

pytestmark = pytest.mark.any_database


def trusting(*names: str) -> ExecutionLimits:
    """The settings' limits, with these plugins allowed the thread they ask for."""
    return replace(ExecutionLimits.from_settings(), thread_allowed=frozenset(names))


def test_calling_run_directly_raises():
    plugin = EchoPlugin()
    with pytest.raises(UngovernedExecutionError, match=r"ToolRunner\.run"):
        plugin.run(EchoInput(message="x"))  # governance: allow[GOV001] tests the guard
    assert plugin.calls == []


def test_a_result_through_toolrunner_then_a_direct_call_raises():
    registry = PluginRegistry(record_metrics=False)
    registry.register(EchoPlugin)
    result, error = ToolRunner(registry=registry).run("echo", {"message": "hi"})
    assert (result, error) == ({"echoed": "hi"}, None)
    payload = EchoInput(message="hi")
    with pytest.raises(UngovernedExecutionError):
        registry.get_plugin("echo").run(payload)  # governance: allow[GOV001] tests the guard


def test_unbound_calls_and_super_calls_are_guarded_too():
    plugin, payload = EchoPlugin(), EchoInput(message="x")
    with pytest.raises(UngovernedExecutionError):
        EchoPlugin.run(plugin, payload)  # governance: allow[GOV001] tests the guard

    class Shouting(EchoPlugin):
        name = "shouting"
        isolation = "thread"  # defined in a test function: a child could not import it

        def run(self, payload):
            return EchoOutput(echoed=super().run(payload).echoed.upper())

    assert run_plugin(Shouting, {"message": "hey"}) == ({"echoed": "HEY"}, None)
    with pytest.raises(UngovernedExecutionError):
        Shouting().run(EchoInput(message="x"))  # governance: allow[GOV001] tests the guard


def test_a_plugin_cannot_run_another_plugin_directly():
    class Sneaky(EchoPlugin):
        name = "sneaky"
        isolation = "thread"  # defined in a test function: a child could not import it

        def run(self, payload):
            return EchoPlugin().run(payload)  # governance: allow[GOV001] tests the guard

    _, error = run_plugin(Sneaky, {"message": "x"})
    assert error["error"]["type"] == "PluginExecutionError"
    assert error["error"]["details"] == {"exception": "UngovernedExecutionError"}


def test_the_authorisation_does_not_leak_to_other_threads_during_an_execution():
    """While a plugin runs under ToolRunner, another thread calling it directly still fails."""
    inside, outside_done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    class Waiting(EchoPlugin):
        name = "waiting"
        isolation = "thread"  # defined in a test function: a child could not import it

        def run(self, payload):
            inside.set()
            outside_done.wait(5)
            return EchoOutput(echoed="done")

    registry = PluginRegistry(record_metrics=False, defaults=trusting("waiting"))
    plugin = registry.register(Waiting)

    def call_directly():
        inside.wait(5)
        try:
            plugin.run(EchoInput(message="x"))  # governance: allow[GOV001] tests the guard
        except UngovernedExecutionError as exc:
            outcome["direct"] = exc
        finally:
            outside_done.set()

    thread = threading.Thread(target=call_directly)
    thread.start()
    result, _ = ToolRunner(registry=registry).run("waiting", {"message": "x"})
    thread.join(5)
    assert result == {"echoed": "done"}
    assert isinstance(outcome["direct"], UngovernedExecutionError)


def test_concurrent_executions_each_see_only_their_own_plugin():
    registry = PluginRegistry(record_metrics=False, defaults=trusting("other"))
    registry.register(EchoPlugin)

    class Other(EchoPlugin):
        name = "other"
        isolation = "thread"  # defined in a test function: a child could not import it

    registry.register(Other)
    runner = ToolRunner(registry=registry)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda i: runner.run("echo" if i % 2 else "other", {"message": str(i)}),
                range(200),
            )
        )
    assert all(error is None for _, error in results)
    assert [r["echoed"] for r, _ in results] == [str(i) for i in range(200)]


def test_run_plugin_is_the_supported_way_to_test_a_plugin():
    assert run_plugin(EchoPlugin, {"message": "a", "repeat": 3}) == ({"echoed": "aaa"}, None)
    _, error = run_plugin(EchoPlugin, {"repeat": 3})
    assert error["error"]["type"] == "ValidationError"
