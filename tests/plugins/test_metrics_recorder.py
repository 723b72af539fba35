"""The recorders ToolRunner is handed: now, or held until the caller's transaction commits."""

from __future__ import annotations

import logging

import pytest
from django.db import OperationalError, transaction
from prometheus_client import REGISTRY

from plugins.metrics.recorder import DeferredRecorder, ExecutionMetrics
from plugins.models import PluginMetrics, PluginMetricsQuerySet

pytestmark = pytest.mark.django_db


def counts(name: str) -> tuple[int, int]:
    row = PluginMetrics.objects.filter(plugin_name=name).first()
    return (row.success_count, row.error_count) if row else (0, 0)


def executions(plugin: str, outcome: str) -> float:
    labels = {"plugin": plugin, "outcome": outcome}
    return REGISTRY.get_sample_value("governed_plugin_executions_total", labels) or 0.0


def failures() -> float:
    return REGISTRY.get_sample_value("governed_plugin_metrics_failures_total") or 0.0


def an_execution(name: str = "echo", *, had_error: bool = False) -> ExecutionMetrics:
    outcome = "PluginExecutionError" if had_error else "success"
    return ExecutionMetrics(name, "AVAILABLE", 2.0, had_error, outcome)


def test_toolrunner_writes_the_row_at_once_unless_handed_another_recorder(runner):
    runner.run("echo", {"message": "x"})
    assert counts("echo") == (1, 0)
    with DeferredRecorder() as metrics:
        runner.run("echo", {"message": "x"}, metrics=metrics)
        runner.run("raising", {"message": "x"}, metrics=metrics)
        assert (counts("echo"), counts("raising")) == ((1, 0), (0, 0))
        assert metrics.counted() == "error"  # the last execution's
    assert (counts("echo"), counts("raising")) == ((2, 0), (0, 1))


def test_the_registry_hands_nothing_over_when_metrics_are_off(runner, registry):
    registry.record_metrics = False
    before = executions("echo", "success")
    with DeferredRecorder() as metrics:
        runner.run("echo", {"message": "x"}, metrics=metrics)
        assert metrics.counted() == ""
    assert executions("echo", "success") == before
    assert counts("echo") == (0, 0)


def test_an_unknown_name_is_counted_under_one_label_and_never_persisted():
    before = executions("__unknown__", "success")
    with DeferredRecorder() as metrics:
        metrics.record(an_execution("no_such_plugin"), registered=False)
        assert metrics.counted() == ""
    assert executions("__unknown__", "success") == before + 1
    assert not PluginMetrics.objects.filter(plugin_name="no_such_plugin").exists()


def test_a_deferred_row_waits_for_the_caller_and_the_instruments_do_not(runner):
    before = executions("echo", "success")
    with DeferredRecorder() as metrics:
        runner.run("echo", {"message": "x"}, metrics=metrics)
        assert executions("echo", "success") == before + 1
        assert counts("echo") == (0, 0)
        assert metrics.counted() == "success"
        with transaction.atomic():
            metrics.write()
        metrics.discard()  # the caller's transaction committed
    assert counts("echo") == (1, 0)


def refused_transaction(metrics: DeferredRecorder) -> None:
    with transaction.atomic():
        metrics.write()
        raise OperationalError("the commit was refused")


def test_a_transaction_tried_again_writes_the_pending_row_again_until_it_commits():
    metrics = DeferredRecorder()
    metrics.record(an_execution(had_error=True), registered=True)
    with pytest.raises(OperationalError):
        refused_transaction(metrics)
    assert counts("echo") == (0, 0)
    assert metrics.counted() == "error"  # still pending: the next try writes it
    with transaction.atomic():
        metrics.write()
    metrics.discard()
    metrics.flush()
    assert counts("echo") == (0, 1)


def test_what_is_pending_when_the_block_ends_is_written_on_its_own():
    with DeferredRecorder() as metrics:
        metrics.record(an_execution(), registered=True)
    assert counts("echo") == (1, 0)
    assert metrics.counted() == ""


def test_take_moves_the_rows_to_a_recorder_that_writes_them_later():
    with DeferredRecorder() as metrics:
        metrics.record(an_execution(), registered=True)
        later = metrics.take()
        assert (metrics.counted(), later.counted()) == ("", "success")
    assert counts("echo") == (0, 0)
    later.flush()
    assert counts("echo") == (1, 0)


def test_a_discarded_row_is_never_written():
    with DeferredRecorder() as metrics:
        metrics.record(an_execution(), registered=True)
        metrics.discard()  # a refused input: no run worth keeping
    assert counts("echo") == (0, 0)


def test_a_failed_row_is_logged_and_counted_and_keeps_the_callers_work(monkeypatch, caplog):
    def broken(self, *args):
        raise ValueError("bad row")

    monkeypatch.setattr(PluginMetricsQuerySet, "record_execution", broken)
    metrics = DeferredRecorder()
    metrics.record(an_execution(), registered=True)
    before = failures()
    with caplog.at_level(logging.ERROR), transaction.atomic():
        PluginMetrics.objects.create(plugin_name="kept")
        metrics.write()
    assert PluginMetrics.objects.filter(plugin_name="kept").exists()
    assert failures() == before + 1
    assert "Recording metrics for plugin 'echo' failed" in caplog.text


def test_flush_never_raises_for_the_database(monkeypatch, caplog):
    def down(self, *args):
        raise OperationalError("database is locked")

    monkeypatch.setattr(PluginMetricsQuerySet, "record_execution", down)
    metrics = DeferredRecorder()
    metrics.record(an_execution(), registered=True)
    before = failures()
    with caplog.at_level(logging.ERROR):
        metrics.flush()
    assert failures() == before + 1
    assert "1 executions went uncounted" in caplog.text
    assert metrics.counted() == ""
