"""The first plugin run after a restart, with the plugins' hosts started at boot or not.

For each of --restarts rounds, and each setting of PLUGIN_WARM_HOSTS (on, off), it starts
gunicorn with deploy/gunicorn.conf.py (1 worker, its post_worker_init hook) and a
db_worker, waits until the server answers /v1/health and then --settle seconds (a
restart, then traffic), and times:
  sync    the first POST /v1/analyze-execution (image_metadata: Pillow in its host)
  worker  the first POST /v1/jobs until GET /v1/jobs/{id} shows SUCCESS (polled every 10 ms)
then stops both. Prints the median and range of each, and the ratio warm / cold.

    .venv/bin/python bench/first_request.py [--restarts 5] [--settle 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

from _django import ROOT, api_token, bench_env, describe_database, setup_django

PLUGIN = "image_metadata"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_healthy(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base} did not become healthy")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def one_restart(
    env: dict[str, str], token: str, payload: dict[str, Any], settle_s: float
) -> tuple[float, float]:
    """(sync seconds, worker seconds) of the first runs after starting both processes."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start: dict[str, Any] = {"cwd": ROOT, "env": env, "start_new_session": True}
    start.update(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py")]
    server = subprocess.Popen([*gunicorn, "--workers", "1", "--bind", f"127.0.0.1:{port}"], **start)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--interval", "0.05"], **start
    )
    try:
        wait_healthy(base)
        time.sleep(settle_s)
        began = time.perf_counter()
        status, body = call(base, token, "POST", "/v1/analyze-execution", payload)
        sync_s = time.perf_counter() - began
        assert status == 200, body
        began = time.perf_counter()
        status, body = call(base, token, "POST", "/v1/jobs", payload)
        assert status == 202, body
        job_id = body["id"]
        while body["status"] not in ("SUCCESS", "FAILED", "CANCELLED"):
            time.sleep(0.01)
            status, body = call(base, token, "GET", f"/v1/jobs/{job_id}")
        worker_s = time.perf_counter() - began
        assert body["status"] == "SUCCESS", body
        return sync_s, worker_s
    finally:
        stop(server)
        stop(worker)


def summary(values: list[float]) -> str:
    low, high = min(values) * 1000, max(values) * 1000
    return f"{statistics.median(values) * 1000:8.0f} ms  ({low:.0f}-{high:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    database_url = setup_django()
    from plugins.builtin.image_metadata import EXAMPLE_IMAGE

    token = api_token()
    payload = {"plugin": PLUGIN, "payload": {"image_base64": EXAMPLE_IMAGE}}
    base_env = {**bench_env(database_url), "PLUGIN_ACCESS": "open", "PLUGINS": ""}
    base_env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.restarts):  # rounds: drift of a shared machine falls on both alike
        for warm in ("1", "0"):
            sync_s, worker_s = one_restart(
                {**base_env, "PLUGIN_WARM_HOSTS": warm}, token, payload, args.settle
            )
            runs = results.setdefault(warm, {"sync": [], "worker": []})
            runs["sync"].append(sync_s)
            runs["worker"].append(worker_s)
    print(f"{describe_database()}; {args.restarts} restarts, {args.settle:g} s after health")
    for kind in ("sync", "worker"):
        on, off = results["1"][kind], results["0"][kind]
        print(f"{kind:7} warm start on  {summary(on)}")
        print(f"{kind:7} warm start off {summary(off)}")
        print(f"{kind:7} ratio on/off   {statistics.median(on) / statistics.median(off):.2f}x")


if __name__ == "__main__":
    main()
