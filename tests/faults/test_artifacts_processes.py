"""The 5 MB image through real processes: gunicorn answers, a db_worker runs the job.

The worker's sandboxed host sends the image across the channel, the worker stores it
under MEDIA_ROOT, and gunicorn streams it back: the same bytes, the same SHA-256.
"""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from execution.artifacts.models import JobArtifact
from execution.models import Job, JobStatus
from tests.faults.conftest import FAULT_PLUGINS, Processes, Server, wait_until
from tests.plugins.artifact_plugins import FIVE_MB, png_bytes

IMAGE_PLUGIN = "tests.plugins.artifact_plugins.ImagePlugin"


@pytest.fixture(autouse=True)
def _image_plugin(settings):
    settings.PLUGINS = [*FAULT_PLUGINS.split(","), IMAGE_PLUGIN]


def fetch(server: Server, url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    request.add_header("Authorization", f"Token {server.token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, dict(response.headers), response.read()


def test_a_five_megabyte_image_from_a_worker_downloads_from_gunicorn(
    processes: Processes, token: str, tmp_path
):
    env = {"PLUGINS": f"{FAULT_PLUGINS},{IMAGE_PLUGIN}", "MEDIA_ROOT": str(tmp_path / "media")}
    server = processes.server(2, **env)
    server.token = token
    processes.worker(**env)
    expected = png_bytes(FIVE_MB)

    status, body = server.request(
        "POST", "/v1/jobs", {"plugin": "image_artifact", "payload": {"seed": 7}}
    )
    assert status == 202, body
    job_id = body["id"]
    wait_until(lambda: Job.objects.get(pk=job_id).status == JobStatus.SUCCESS, timeout_s=60)

    status, job = server.request("GET", f"/v1/jobs/{job_id}")
    assert status == 200
    assert job["result"] == {"width": 640, "height": 480}
    [artifact] = job["artifacts"]
    assert artifact["size"] == FIVE_MB
    assert artifact["url"].startswith(server.base)

    status, headers, data = fetch(server, artifact["url"])
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(FIVE_MB)
    expected = png_bytes(FIVE_MB, seed=7)
    assert data == expected
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert JobArtifact.objects.get(job_id=job_id).sha256 == artifact["sha256"]

    # And synchronously, in one of gunicorn's own hosts.
    status, body = server.execute("image_artifact", {})
    assert status == 200, body
    assert len(str(body)) < 2000
    [artifact] = body["artifacts"]
    _, _, data = fetch(server, artifact["url"])
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(png_bytes(FIVE_MB)).hexdigest()
