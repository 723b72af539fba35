"""A plugin's stdout and stderr are kept on its job, bounded, whatever the plugin does.

Real sandboxed plugin hosts, real jobs through JobExecutionService.
"""

from __future__ import annotations

import pytest

from execution.models import Job, JobStatus
from execution.services import JobExecutionService
from plugins.runtime.isolation.output import truncation_marker

pytestmark = pytest.mark.django_db(transaction=True)

MODULE = "tests.plugins.test_plugin_output_plugins"
NAMES = (
    "TenMegabytesPlugin",
    "RawStderrPlugin",
    "PrintsThenCrashesPlugin",
    "ForkedPrinterPlugin",
    "QuietPlugin",
    "PrintsThenSpinsPlugin",
)


@pytest.fixture(autouse=True)
def _plugins(settings):
    settings.PLUGINS = [f"{MODULE}.{name}" for name in NAMES]
    settings.PLUGIN_ISOLATION = "process"
    settings.PLUGIN_OUTPUT_MAX_BYTES = 4096


def _run(plugin: str) -> Job:
    job = JobExecutionService().execute_now(plugin_name=plugin, payload={})
    return Job.objects.get(pk=job.pk)


def test_ten_megabytes_of_stdout_are_kept_bounded_with_a_marker(settings):
    job = _run("prints_ten_mb")
    assert job.status == JobStatus.SUCCESS
    kept = "x" * 1023 + "\n"
    assert job.plugin_output.startswith(kept * 4)
    assert job.plugin_output.endswith(truncation_marker(10 * 1024 * 1024, 4096))
    assert len(job.plugin_output.encode()) < 4096 + 200


def test_what_is_written_to_fd_two_directly_is_kept_with_stdout():
    job = _run("writes_fd_two")
    assert job.status == JobStatus.SUCCESS
    assert "straight to fd 2\n" in job.plugin_output
    assert "and some stdout\n" in job.plugin_output


def test_the_output_of_a_plugin_that_crashed_is_kept():
    job = _run("prints_then_crashes")
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "PluginCrashed"
    assert job.plugin_output == "last words before the crash\n"


def test_the_output_of_a_plugin_that_timed_out_and_was_killed_is_kept():
    job = _run("prints_then_spins")
    assert job.status == JobStatus.FAILED
    assert job.error["error"]["type"] == "PluginTimeout"
    assert job.plugin_output == "about to spin\n"


def test_a_forked_child_that_keeps_printing_reaches_neither_its_job_unbounded_nor_the_next():
    job = _run("forked_printer")
    assert job.plugin_output.startswith("parent printed\n")
    assert "child\n" in job.plugin_output
    assert len(job.plugin_output.encode()) <= 4096 + 200
    # The next execution of the same plugin starts with an empty output.
    after = _run("forked_printer")
    assert after.plugin_output.startswith("parent printed\n")


def test_a_quiet_plugin_leaves_no_output():
    assert _run("quiet").plugin_output == ""
