import threading

import pytest
from django.db import connection

from plugins.models import PluginMetrics, PluginState
from plugins.registry import PluginRegistry
from plugins.runtime.tool_runner import ToolRunner
from tests.plugins.sample_plugins import EchoPlugin, RaisingPlugin


@pytest.mark.django_db
def test_the_average_is_the_true_mean():
    for elapsed in (10.0, 20.0, 60.0):
        PluginMetrics.objects.record_execution("p", PluginState.AVAILABLE, elapsed, False)
    row = PluginMetrics.objects.get(plugin_name="p")
    assert row.avg_execution_time_ms == pytest.approx(
        30.0
    )  # (10+20)/2 then (15+60)/2 would be 37.5
    assert row.total_execution_time_ms == pytest.approx(90.0)
    assert row.last_execution_time_ms == pytest.approx(60.0)
    assert (row.success_count, row.error_count, row.execution_count) == (3, 0, 3)


@pytest.mark.django_db
def test_errors_count_separately_and_give_the_error_rate():
    PluginMetrics.objects.record_execution("p", PluginState.AVAILABLE, 1.0, True)
    PluginMetrics.objects.record_execution("p", PluginState.AVAILABLE, 3.0, False)
    PluginMetrics.objects.record_execution("p", PluginState.AVAILABLE, 2.0, False)
    PluginMetrics.objects.record_execution("p", PluginState.AVAILABLE, 2.0, False)
    row = PluginMetrics.objects.get(plugin_name="p")
    assert (row.success_count, row.error_count) == (3, 1)
    assert row.error_rate == pytest.approx(0.25)
    assert row.avg_execution_time_ms == pytest.approx(2.0)


@pytest.mark.django_db
def test_a_plugin_that_never_ran_has_a_zero_error_rate():
    assert PluginMetrics(plugin_name="idle").error_rate == 0.0


@pytest.mark.django_db(transaction=True)
def test_eight_threads_times_one_hundred_executions_give_exact_counts():
    registry = PluginRegistry(record_metrics=True)
    registry.register(EchoPlugin)
    registry.register(RaisingPlugin)
    runner = ToolRunner(registry=registry)
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for i in range(100):
                name = "raising" if (index + i) % 4 == 0 else "echo"
                runner.run(name, {"message": "x"})
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    echo = PluginMetrics.objects.get(plugin_name="echo")
    raising = PluginMetrics.objects.get(plugin_name="raising")
    assert (echo.success_count, echo.error_count) == (600, 0)
    assert (raising.success_count, raising.error_count) == (0, 200)
    assert echo.avg_execution_time_ms == pytest.approx(echo.total_execution_time_ms / 600)


@pytest.mark.django_db
def test_sync_registry_creates_rows_for_plugins_that_never_ran_and_tracks_state():
    registry = PluginRegistry()
    registry.register(EchoPlugin)
    registry.mark_unavailable("ghost", source="tests", reason="missing dependency")
    PluginMetrics.objects.sync_registry(registry.get_status())
    PluginMetrics.objects.sync_registry(registry.get_status())
    rows = {row.plugin_name: row for row in PluginMetrics.objects.all()}
    assert rows.keys() == {"echo", "ghost"}
    assert rows["ghost"].state == PluginState.UNAVAILABLE
    assert rows["ghost"].state_reason == "missing dependency"
    assert rows["echo"].execution_count == 0


@pytest.mark.django_db
def test_metrics_endpoint_exposes_counters_histogram_and_persisted_values(client, settings):
    settings.PLUGINS = ["tests.plugins.sample_plugins.EchoPlugin"]
    ToolRunner().run("echo", {"message": "x"})
    ToolRunner().run("echo", {})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    page = response.content.decode()
    # Without PROMETHEUS_MULTIPROC_DIR, this process's own counters could not agree with
    # another process's: they are left out (the database's counts are on the page).
    assert "governed_plugin_executions_total" not in page
    assert "governed_plugin_execution_seconds_bucket" not in page
    assert 'governed_plugin_persisted_executions_total{plugin="echo",result="success"} 1.0' in page
    assert 'governed_plugin_persisted_executions_total{plugin="echo",result="error"} 1.0' in page
    assert 'governed_plugin_available{plugin="echo"} 1.0' in page
    assert "governed_plugin_abandoned_threads" in page


def test_metrics_endpoint_answers_without_a_database(client, monkeypatch):
    from django.db import DatabaseError
    from prometheus_client import CollectorRegistry

    from plugins.metrics import exposition

    class Down:
        def collect(self):
            raise DatabaseError("no database")

    broken = CollectorRegistry(auto_describe=False)
    broken.register(Down())
    monkeypatch.setattr(exposition, "_persisted_registry", broken)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"governed_plugin_abandoned_threads" in response.content
