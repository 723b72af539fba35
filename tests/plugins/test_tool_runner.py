import json
import logging
import time
from typing import ClassVar

import pytest
from prometheus_client import REGISTRY
from pydantic import field_validator

from plugins.errors.error_envelope import ErrorType
from plugins.errors.exceptions import PluginExecutionError
from plugins.models import PluginMetrics
from plugins.registry import PluginRegistry
from plugins.runtime.isolation.thread import ThreadIsolation
from plugins.runtime.limits import ExecutionLimits, IsolationKind
from plugins.runtime.tool_runner import ToolRunner
from tests.conftest import SAMPLE_PLUGIN_CLASSES
from tests.plugins import sample_plugins
from tests.plugins.sample_plugins import EchoPlugin, SlowPlugin

pytestmark = [pytest.mark.any_database, pytest.mark.django_db]

SAMPLES = (
    *SAMPLE_PLUGIN_CLASSES,
    sample_plugins.SlowValidatorPlugin,
    sample_plugins.HugeResultPlugin,
)


@pytest.fixture(params=[IsolationKind.PROCESS, IsolationKind.THREAD])
def isolation(request) -> IsolationKind:
    return request.param


@pytest.fixture
def registry(isolation) -> PluginRegistry:
    """The sample plugins, in each isolation mode: the behaviour must not depend on it."""
    registry = PluginRegistry(defaults=ExecutionLimits(isolation=isolation, timeout_s=5.0))
    for cls in SAMPLES:
        registry.register(cls, source="tests")
    return registry


@pytest.fixture
def thread_registry() -> PluginRegistry:
    """For tests that look into the plugin instance: in thread mode it is the registry's."""
    registry = PluginRegistry(defaults=ExecutionLimits(isolation=IsolationKind.THREAD))
    registry.register(EchoPlugin)
    return registry


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


def test_success_returns_the_validated_output_and_counts_it(runner):
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


def test_the_plugin_receives_the_validated_model(thread_registry):
    ToolRunner(registry=thread_registry).run("echo", {"message": "x", "repeat": 3})
    (call,) = thread_registry.get_plugin("echo").calls
    assert call.repeat == 3
    assert type(call).__name__ == "EchoInput"


@pytest.mark.parametrize("repeat", ["3", True, 3.5])
def test_input_is_what_its_json_schema_says_not_what_pydantic_can_coerce(runner, repeat):
    _, error = runner.run("echo", {"message": "x", "repeat": repeat})
    assert error["error"]["type"] == ErrorType.VALIDATION_ERROR
    assert error["error"]["details"]["errors"][0]["location"] == ["repeat"]


def test_a_whole_number_written_with_a_fraction_is_an_integer(runner):
    """JSON Schema's "integer" is any number without a fractional part, 3.0 included."""
    assert runner.run("echo", {"message": "ab", "repeat": 2.0}) == ({"echoed": "abab"}, None)


def test_a_dict_output_is_validated_and_accepted(runner):
    assert runner.run("dict_echo", {"message": "hi"}) == ({"echoed": "hi"}, None)


@pytest.mark.parametrize(
    "payload",
    [{}, {"message": 5}, {"message": "x", "repeat": "many"}, [], "text", None, 17],
)
def test_invalid_input_is_a_validation_error(runner, payload):
    result, error = runner.run("echo", payload)
    assert result is None
    assert_envelope(error, ErrorType.VALIDATION_ERROR, "echo")
    assert metrics_row("echo").error_count == 1


def test_invalid_input_never_reaches_the_plugin(thread_registry):
    _, error = ToolRunner(registry=thread_registry).run("echo", {"message": 5})
    assert error["error"]["type"] == ErrorType.VALIDATION_ERROR
    assert thread_registry.get_plugin("echo").calls == []


def test_validation_details_list_pydantic_errors(runner):
    _, error = runner.run("echo", {"repeat": "many"})
    details = error["error"]["details"]["errors"]
    assert {"location": ["message"], "message": "Field required", "type": "missing"} in details
    assert any(d["location"] == ["repeat"] and d["type"] == "int_type" for d in details)


def test_output_no_database_can_store_is_an_output_validation_error(runner):
    result, error = runner.run("echo", {"message": "a\x00b"})
    assert result is None
    assert_envelope(error, ErrorType.OUTPUT_VALIDATION_ERROR, "echo")
    assert error["error"]["details"]["errors"][0]["location"] == ["echoed"]
    result, error = runner.run("echo", {"message": "\ud800"})  # not even valid input
    assert result is None
    assert_envelope(error, ErrorType.VALIDATION_ERROR, "echo")


def test_error_reports_are_always_storable():
    from plugins.errors.error_envelope import build_error_envelope

    envelope = build_error_envelope(
        ErrorType.PLUGIN_EXECUTION_ERROR,
        "bad \x00 message \ud800",
        details={"value": float("inf"), "text": "\x00", "\ud800": [float("nan")]},
    )
    encoded = json.dumps(envelope, allow_nan=False).encode("utf-8")
    assert b"\\u0000" not in encoded
    assert envelope["error"]["details"]["value"] == "Infinity"
    listed = build_error_envelope(ErrorType.PLUGIN_EXECUTION_ERROR, "x", details=[1, 2])
    assert listed["error"]["details"] == {"value": [1, 2]}  # details are always an object


def test_a_raising_plugin_becomes_an_execution_error_without_leaking_its_message(runner):
    result, error = runner.run("raising", {"message": "x"})
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_EXECUTION_ERROR, "raising")
    assert "postgres://" not in error["error"]["message"]
    assert error["error"]["details"] == {"exception": "ValueError"}
    assert "postgres://user:pw@db" in error["_internal"]["traceback"]
    assert metrics_row("raising").error_count == 1


def test_a_plugin_error_raised_on_purpose_keeps_its_message(thread_registry):
    class Refusing(EchoPlugin):
        name = "refusing"
        isolation = "thread"

        def run(self, payload):
            raise PluginExecutionError(
                "message too long for this model", details={"max": 3, "odd": {1, 2}}
            )

    thread_registry.register(Refusing)
    _, error = ToolRunner(registry=thread_registry).run("refusing", {"message": "x"})
    assert error["error"]["message"] == "message too long for this model"
    # Details come from plugin code: whatever is not JSON is shown as its repr.
    assert error["error"]["details"] == {"max": 3, "odd": "{1, 2}"}


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
    assert error["error"]["details"]["errors"][0]["location"] == ["echoed"]


def test_a_result_over_the_size_bound_is_an_output_validation_error(runner, registry):
    limit = registry.defaults.max_result_bytes
    assert runner.run("huge_result", {"message": "x", "repeat": 1})[1] is None
    _, error = runner.run("huge_result", {"message": "x", "repeat": limit // 1024 + 1})
    assert_envelope(error, ErrorType.OUTPUT_VALIDATION_ERROR, "huge_result")
    assert error["error"]["details"]["max_result_bytes"] == limit
    assert error["error"]["details"]["result_bytes"] > limit


def test_a_plugin_past_its_time_limit_is_a_timeout(runner):
    SlowPlugin.release.clear()  # in thread mode, the test lets the abandoned call end
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


def test_a_slow_validator_is_held_to_the_time_limit_too(runner):
    """Validators are plugin code: a 1 s validator under a 0.3 s limit is a timeout."""
    result, error = runner.run("slow_validator", {"message": "1"})
    assert result is None
    assert_envelope(error, ErrorType.PLUGIN_TIMEOUT, "slow_validator")
    assert runner.run("slow_validator", {"message": "0"}) == ({"echoed": "0"}, None)


def test_the_default_time_limit_applies_when_the_plugin_sets_none(isolation):
    registry = PluginRegistry(defaults=ExecutionLimits(isolation=isolation, timeout_s=0.05))
    registry.register(sample_plugins.SleepingPlugin)  # sets no timeout_s
    _, error = ToolRunner(registry=registry).run("sleeping", {"message": "x", "repeat": 500})
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


# Validation without a run (a background job's admission) --------------------------------


def test_validate_accepts_valid_input_without_running_the_plugin(thread_registry):
    runner = ToolRunner(registry=thread_registry)
    assert runner.validate("echo", {"message": "x", "repeat": 3}) is None
    assert thread_registry.get_plugin("echo").calls == []


def test_validate_refuses_bad_input_and_unknown_plugins_by_raising(runner):
    from plugins.errors.exceptions import InputValidationError, PluginNotFoundError

    with pytest.raises(InputValidationError) as excinfo:
        runner.validate("echo", {"repeat": "many"})
    assert excinfo.value.plugin == "echo"
    assert any(d["location"] == ["message"] for d in excinfo.value.details["errors"])
    with pytest.raises(PluginNotFoundError):
        runner.validate("missing", {})


def test_a_validator_that_overruns_is_reported_not_raised(runner):
    failure = runner.validate("slow_validator", {"message": "1"})
    assert failure["error"]["type"] == ErrorType.PLUGIN_TIMEOUT
    assert failure["error"]["plugin"] == "slow_validator"
    assert runner.validate("slow_validator", {"message": "0"}) is None


def test_the_plugin_runs_exactly_the_model_it_validated_once(thread_registry):
    class CountingInput(sample_plugins.EchoInput):
        validations: ClassVar[list[str]] = []

        @field_validator("message")
        @classmethod
        def count(cls, value: str) -> str:
            cls.validations.append(value)
            return value.upper()

    class Counting(EchoPlugin):
        name = "counting"
        isolation = "thread"
        Input = CountingInput

    thread_registry.register(Counting)
    result, _ = ToolRunner(registry=thread_registry).run("counting", {"message": "x"})
    assert result == {"echoed": "X"}  # the validated (upper-cased) value is what ran
    assert CountingInput.validations == ["x"]
    (call,) = thread_registry.get_plugin("counting").calls
    assert call.message == "X"


def test_every_isolation_kind_has_its_implementation():
    from plugins.runtime.isolation import ISOLATIONS

    assert set(ISOLATIONS) == set(IsolationKind)


# Thread isolation ----------------------------------------------------------------------


def test_an_abandoned_thread_is_counted_and_does_not_block_later_executions(thread_registry):
    thread_registry.register(SlowPlugin)
    threads = ThreadIsolation()
    runner = ToolRunner(registry=thread_registry, isolations={IsolationKind.THREAD: threads})
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


def test_process_isolated_plugins_must_be_importable_by_the_child():
    from plugins.errors.exceptions import PluginContractError

    class Local(EchoPlugin):
        name = "local"

    with pytest.raises(PluginContractError, match="must be importable by its module path"):
        PluginRegistry(defaults=ExecutionLimits(isolation=IsolationKind.PROCESS)).register(Local)
    PluginRegistry(defaults=ExecutionLimits(isolation=IsolationKind.THREAD)).register(Local)


@pytest.mark.parametrize("isolation", [IsolationKind.PROCESS, IsolationKind.THREAD])
def test_a_control_that_fails_to_start_stops_the_execution_and_raises(isolation):
    from plugins.runtime.control import ControlFailed

    registry = PluginRegistry(defaults=ExecutionLimits(isolation=isolation))
    registry.register(EchoPlugin)

    class FailingControl:
        def started(self):
            time.sleep(0.2)  # the plugin is done by now: its result must not be used
            raise RuntimeError("could not record the job")

        def stop_reason(self):
            return None

        def progress(self, report):
            pass

    with pytest.raises(ControlFailed, match="could not record the job"):
        ToolRunner(registry=registry).run("echo", {"message": "x"}, control=FailingControl())
    assert PluginMetrics.objects.get(plugin_name="echo").error_count == 1
