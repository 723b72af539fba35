import logging
import time

import pytest
from prometheus_client import REGISTRY

from plugins.errors.error_envelope import ErrorType
from plugins.errors.exceptions import PluginExecutionError
from plugins.models import PluginMetrics
from plugins.registry import PluginRegistry
from plugins.runtime.time_limit import ExecutionThreads
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins.sample_plugins import EchoPlugin, SlowPlugin

pytestmark = pytest.mark.django_db


def executions(plugin: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "governed_plugin_executions_total", {"plugin": plugin, "outcome": outcome}
    )
    return value or 0.0


def metrics_row(name: str) -> PluginMetrics:
    return PluginMetrics.objects.get(plugin_name=name)


def assert_envelope(error, error_type: ErrorType, plugin: str) -> None:
    assert error is not None
    assert set(error) == {"error", "_internal"}
    assert set(error["error"]) == {"type", "message", "details", "plugin", "timestamp"}
    assert error["error"]["type"] == error_type
    assert error["error"]["plugin"] == plugin
    assert error["_internal"]["traceback"].startswith("Traceback")


def test_success_returns_the_validated_output_and_counts_it(runner, registry):
    before = executions("echo", "success")
    result, error = runner.run("echo", {"message": "ab", "repeat": 2})
    assert error is None
    assert result == {"echoed": "abab"}
    row = metrics_row("echo")
    assert (row.success_count, row.error_count) == (1, 0)
    assert row.last_execution_time_ms is not None
    assert row.last_execution_time_ms > 0
    assert row.last_used is not None
    assert executions("echo", "success") == before + 1


def test_the_plugin_receives_the_validated_model(runner, registry):
    runner.run("echo", {"message": "x", "repeat": "3"})
    (call,) = registry.get_plugin("echo").calls
    assert call.repeat == 3
    assert type(call).__name__ == "EchoInput"


def test_a_dict_output_is_validated_and_accepted(runner):
    assert runner.run("dict_echo", {"message": "hi"}) == ({"echoed": "hi"}, None)


@pytest.mark.parametrize(
    "payload",
    [{}, {"message": 5}, {"message": "x", "repeat": "many"}, [], "text", None, 17],
)
def test_invalid_input_never_reaches_the_plugin(runner, registry, payload):
    result, error = runner.run("echo", payload)
    assert result is None
    assert_envelope(error, ErrorType.VALIDATION_ERROR, "echo")
    assert registry.get_plugin("echo").calls == []
    assert metrics_row("echo").error_count == 1


def test_validation_details_list_pydantic_errors(runner):
    _, error = runner.run("echo", {"repeat": "many"})
    details = error["error"]["details"]
    assert {"location": ["message"], "message": "Field required", "type": "missing"} in details
    assert any(d["location"] == ["repeat"] and d["type"] == "int_parsing" for d in details)


def test_a_raising_plugin_becomes_an_execution_error_without_leaking_its_message(runner):
    result, error = runner.run("raising", {"message": "x"})
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_EXECUTION_ERROR, "raising")
    assert "postgres://" not in error["error"]["message"]
    assert error["error"]["details"] == {"exception": "ValueError"}
    assert "postgres://user:pw@db" in error["_internal"]["traceback"]
    assert metrics_row("raising").error_count == 1


def test_a_plugin_error_raised_on_purpose_keeps_its_message(registry):
    class Refusing(EchoPlugin):
        name = "refusing"

        def run(self, payload):
            raise PluginExecutionError("message too long for this model", details={"max": 3})

    registry.register(Refusing)
    _, error = ToolRunner(registry=registry).run("refusing", {"message": "x"})
    assert error["error"]["message"] == "message too long for this model"
    assert error["error"]["details"] == {"max": 3}


def test_system_exit_inside_a_plugin_is_contained(runner):
    _, error = runner.run("exits", {"message": "x"})
    assert_envelope(error, ErrorType.PLUGIN_EXECUTION_ERROR, "exits")
    assert error["error"]["details"] == {"exception": "SystemExit"}


@pytest.mark.parametrize(
    ("plugin", "returned"),
    [("returns_none", "None"), ("list_output", "list")],
)
def test_none_or_non_dict_output_is_an_output_validation_error(runner, plugin, returned):
    result, error = runner.run(plugin, {"message": "x"})
    assert result is None
    assert_envelope(error, ErrorType.OUTPUT_VALIDATION_ERROR, plugin)
    assert error["error"]["details"] == {"returned_type": returned}
    assert metrics_row(plugin).error_count == 1


def test_output_with_missing_or_wrong_fields_is_an_output_validation_error(runner):
    _, error = runner.run("wrong_output", {"message": "x"})
    assert_envelope(error, ErrorType.OUTPUT_VALIDATION_ERROR, "wrong_output")
    assert error["error"]["details"][0]["location"] == ["echoed"]


def test_a_plugin_past_its_time_limit_is_a_timeout_and_its_late_result_is_discarded(runner):
    SlowPlugin.release.clear()
    try:
        result, error = runner.run("slow", {"message": "x"})
    finally:
        SlowPlugin.release.set()
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_TIMEOUT, "slow")
    assert error["error"]["details"] == {"timeout_s": 0.2}
    row = metrics_row("slow")
    assert row.error_count == 1
    assert row.last_execution_time_ms >= 200


def test_the_default_time_limit_applies_when_the_plugin_sets_none(settings):
    registry = PluginRegistry(default_timeout_s=0.05)

    class Lingering(SlowPlugin):
        name = "lingering"
        timeout_s = None

    registry.register(Lingering)
    SlowPlugin.release.clear()
    try:
        _, error = ToolRunner(registry=registry).run("lingering", {"message": "x"})
    finally:
        SlowPlugin.release.set()
    assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert error["error"]["details"] == {"timeout_s": 0.05}


def test_unknown_plugins_are_counted_under_one_label_without_a_row(runner):
    before = executions("__unknown__", "PluginNotFound")
    result, error = runner.run("does_not_exist", {})
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_NOT_FOUND, "does_not_exist")
    assert executions("__unknown__", "PluginNotFound") == before + 1
    assert not PluginMetrics.objects.filter(plugin_name="does_not_exist").exists()


def test_unavailable_plugins_report_their_reason_and_are_counted(registry):
    registry.mark_unavailable("ghost", source="tests", reason="needs libghost")
    result, error = ToolRunner(registry=registry).run("ghost", {})
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_UNAVAILABLE, "ghost")
    assert error["error"]["details"] == {"reason": "needs libghost"}
    row = metrics_row("ghost")
    assert (row.error_count, row.state) == (1, "UNAVAILABLE")


def test_a_metrics_failure_changes_nothing_about_the_outcome(runner, registry, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("metrics store down")

    monkeypatch.setattr(registry, "update_execution_metrics", broken)
    failures = REGISTRY.get_sample_value("governed_plugin_metrics_failures_total") or 0
    with caplog.at_level(logging.ERROR):
        assert runner.run("echo", {"message": "ok"}) == ({"echoed": "ok"}, None)
        _, error = runner.run("raising", {"message": "x"})
    assert error["error"]["type"] == ErrorType.PLUGIN_EXECUTION_ERROR
    assert REGISTRY.get_sample_value("governed_plugin_metrics_failures_total") == failures + 2
    assert "Recording metrics for plugin 'echo' failed" in caplog.text


def test_metrics_can_be_switched_off(registry):
    registry.record_metrics = False
    assert ToolRunner(registry=registry).run("echo", {"message": "x"})[1] is None
    assert not PluginMetrics.objects.exists()


def test_exactly_one_of_result_and_error_is_set(runner):
    for name, payload in [
        ("echo", {"message": "x"}),
        ("echo", {}),
        ("raising", {"message": "x"}),
        ("returns_none", {"message": "x"}),
        ("missing", {}),
    ]:
        result, error = runner.run(name, payload)
        assert (result is None) != (error is None)


def test_an_abandoned_thread_is_counted_and_does_not_block_later_executions(registry):
    threads = ExecutionThreads()
    runner = ToolRunner(registry=registry, threads=threads)
    SlowPlugin.release.clear()
    try:
        _, error = runner.run("slow", {"message": "x"})
        assert error["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
        assert threads.abandoned == 1
        assert runner.run("echo", {"message": "still served"}) == ({"echoed": "still served"}, None)
    finally:
        SlowPlugin.release.set()
    for _ in range(500):  # the abandoned call ends once released; wait for its bookkeeping
        if threads.abandoned == 0:
            break
        time.sleep(0.01)
    assert threads.abandoned == 0
