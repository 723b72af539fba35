"""Each layer calls only the next one, and none of them catches plugin exceptions."""

from typing import Any, cast

import pytest

from execution.models import Job, JobStatus
from execution.services import (
    AnalysisExecutionService,
    JobExecutionService,
    PluginExecutionService,
)
from execution.task_engine.django_tasks_db.engine import DjangoTasksDbEngine
from plugins.errors.exceptions import InputValidationError, PluginNotFoundError
from plugins.models import PluginMetrics
from plugins.registry import PluginRegistry
from plugins.runtime.tool_runner import ToolRunner

pytestmark = pytest.mark.django_db


class Recorder:
    """Wraps a real collaborator and records which of its methods are called."""

    def __init__(self, wrapped):
        self._wrapped = wrapped
        self.calls: list[str] = []

    def __getattr__(self, name):
        attribute = getattr(self._wrapped, name)
        if not callable(attribute):
            return attribute

        def recorded(*args, **kwargs):
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return recorded


def test_analysis_service_calls_only_the_job_service(user):
    jobs = Recorder(JobExecutionService())
    job = AnalysisExecutionService(jobs=cast(Any, jobs)).execute(
        plugin_name="echo", payload={"message": "x"}, user=user
    )
    assert jobs.calls == ["execute_now"]
    assert job.status == JobStatus.SUCCESS
    assert job.requested_by == user


def test_job_service_reaches_plugins_only_through_the_plugin_service():
    plugins = Recorder(PluginExecutionService())
    job = JobExecutionService(plugins=cast(Any, plugins)).execute_now(
        plugin_name="echo", payload={"message": "x"}
    )
    assert plugins.calls == ["describe", "execute"]
    assert job.result == {"echoed": "x"}


def test_plugin_service_delegates_execution_to_toolrunner(monkeypatch):
    calls = []
    original = ToolRunner.run

    def spy(self, plugin_name, payload, **kwargs):
        calls.append((plugin_name, payload))
        return original(self, plugin_name, payload, **kwargs)

    monkeypatch.setattr(ToolRunner, "run", spy)
    result, error = PluginExecutionService().execute(plugin_name="echo", payload={"message": "x"})
    assert (result, error) == ({"echoed": "x"}, None)
    assert calls == [("echo", {"message": "x"})]


def test_a_raising_plugin_becomes_a_failed_job_not_an_exception():
    job = JobExecutionService().execute_now(plugin_name="raising", payload={"message": "x"})
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "PluginExecutionError"
    assert "secret connection string" in job.error["_internal"]["traceback"]


@pytest.mark.parametrize(
    ("plugin", "payload", "error"),
    [("missing", {}, PluginNotFoundError), ("echo", {"repeat": "x"}, InputValidationError)],
)
def test_bad_requests_are_refused_before_anything_is_recorded(plugin, payload, error):
    with pytest.raises(error):
        AnalysisExecutionService().execute(plugin_name=plugin, payload=payload)
    with pytest.raises(error):
        AnalysisExecutionService().submit(plugin_name=plugin, payload=payload)
    assert not Job.objects.exists()
    assert not PluginMetrics.objects.exists()


def test_the_outcome_and_the_metrics_are_recorded_together():
    job = JobExecutionService().execute_now(plugin_name="echo", payload={"message": "x"})
    metrics = PluginMetrics.objects.get(plugin_name="echo")
    assert (metrics.success_count, metrics.error_count) == (1, 0)
    assert job.plugin_version == "1.0"
    failed = JobExecutionService().execute_now(plugin_name="returns_none", payload={"message": "x"})
    assert failed.error["error"]["type"] == "OutputValidationError"
    assert PluginMetrics.objects.get(plugin_name="returns_none").error_count == 1


def test_run_job_runs_a_pending_job_once():
    service = JobExecutionService()
    job = service.create_job(plugin_name="echo", payload={"message": "x"})
    assert job.status == JobStatus.PENDING
    assert service.run_job(job_id=job.pk).status == JobStatus.SUCCESS
    again = service.run_job(job_id=job.pk)  # enqueued twice: the second run finds it done
    assert again.status == JobStatus.SUCCESS
    assert PluginMetrics.objects.get(plugin_name="echo").success_count == 1


def test_a_job_whose_plugin_disappeared_fails_with_the_toolrunner_envelope(settings):
    service = JobExecutionService()
    job = service.create_job(plugin_name="echo", payload={"message": "x"})
    registry = PluginRegistry()  # a later deploy without the plugin
    job = JobExecutionService(plugins=PluginExecutionService(registry)).run_job(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert job.error_type == "PluginNotFound"


def test_a_job_that_cannot_be_queued_is_not_recorded():
    class Unreachable(DjangoTasksDbEngine):
        def enqueue(self, job_id, *, run_after=None):
            raise RuntimeError("queue is down")

    service = AnalysisExecutionService(JobExecutionService(engine=Unreachable()))
    with pytest.raises(RuntimeError, match="queue is down"):
        service.submit(plugin_name="echo", payload={"message": "x"})
    assert not Job.objects.exists()  # nothing waits for a task that will never come
