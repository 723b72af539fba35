"""HTTP throughput of the governed endpoint against two bare baselines, in one run.

gunicorn (2 sync workers) on 127.0.0.1 serves, and wrk drives each endpoint in turn,
in rounds (so that drift of a shared machine falls on all of them alike):
  governed     POST /v1/analyze-execution with a no-op plugin (validation, job, metrics,
               the audit trail, the policy: a grant, rate limits too high to trip, quotas)
  audit off    the same, on a second server with AUDIT_ENABLED=0 (same database)
  policy off   the same, on a third server with no policy: PLUGIN_ACCESS=open, no rate
               limits, no quotas (the audit on)
  bookkeeping  POST /bench/bookkeeping: the naive job bookkeeping, three commits
  echo         POST /bench/echo: authentication and JSON in/out, no database writes
Prints requests/s, p50 and p99 latency and the ratios to the baselines. Only one
server is loaded at a time.
Each server has its db_worker beside it, as deployed: the worker seals the audit
entries, the web processes only as its backstop. At the end it prints how long the
worker took to seal the last entries.

    .venv/bin/python bench/http_execution.py [--duration 15] [--rounds 3]
        [--database-url postgres://...]

Needs wrk (apt-get install wrk).

The API's rate limits are off (bench/_django.py's THROTTLES_OFF) except on the
governed and audit-off servers, where they are set too high to trip (POLICY_ON): wrk
sends far more than a user may.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _django import ROOT, api_token, bench_env, describe_database, setup_django

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
BODY = {"plugin": "bench_noop", "payload": {}}
TARGET_RATIO = 0.8
AUDIT_TARGET_RATIO = 0.95
POLICY_TARGET_RATIO = 0.95
# The policy as deployed, at limits wrk does not reach: every check still runs.
POLICY_ON = {
    "PLUGIN_ACCESS": "restricted",
    "API_THROTTLE_BURST": "100000000/min",
    "API_THROTTLE_SUSTAINED": "100000000/day",
    "API_THROTTLE_AUTH_FAILURES": "30/min",
    "POLICY_MAX_SYNC_RUNS": "64",
}
POLICY_OFF = {
    "PLUGIN_ACCESS": "open",
    **dict.fromkeys(
        ("POLICY_MAX_ACTIVE_JOBS", "POLICY_MAX_SYNC_RUNS", "POLICY_DAILY_STORED_BYTES"), "0"
    ),
    "POLICY_DAILY_EXECUTION_S": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer {url} within {timeout:.0f} s")


def wrk(url: str, token: str, duration: int, connections: int) -> dict[str, float]:
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Token {token}"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        handle.name,
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for label in ("50", "99"):
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        figures[f"p{label}"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def combine(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one endpoint as one: mean throughput, median latencies, all non-2xx."""
    return {
        "rps": statistics.fmean(r["rps"] for r in rounds),
        "p50": statistics.median(r["p50"] for r in rounds),
        "p99": statistics.median(r["p99"] for r in rounds),
        "non_2xx": sum(r["non_2xx"] for r in rounds),
    }


def start_server(
    database_url: str, *, audit: bool, policy: dict[str, str]
) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """gunicorn, 2 sync workers, on a free port, and a db_worker; the audit on or off."""
    port = free_port()
    env = {**bench_env(database_url), "AUDIT_ENABLED": "1" if audit else "0", **policy}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "-v", "0"],
        cwd=ROOT,
        env=env,
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "project.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
    )
    return f"http://127.0.0.1:{port}", [server, worker]


def seconds_until_sealed(timeout: float = 120.0) -> float | None:
    """How long until no audit entry waits to be sealed; None past ``timeout``."""
    from execution.audit.models import AuditEntry

    started = time.monotonic()
    while AuditEntry.objects.filter(seq__isnull=True).exists():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.1)
    return time.monotonic() - started


def describe_containment() -> str:
    """Where the governed endpoint's plugin runs; the server has this process's settings."""
    from django.conf import settings

    from plugins.runtime.isolation.process import SandboxSettings

    if settings.PLUGIN_ISOLATION != "process":
        return f"isolation={settings.PLUGIN_ISOLATION}"
    return (
        f"isolation=process, a host of its own per web process "
        f"(PLUGIN_HOSTS_PER_PLUGIN={settings.PLUGIN_HOSTS_PER_PLUGIN}), sandbox "
        f"{SandboxSettings.from_settings().describe()}; governed = one round trip to the "
        "host per request (validate and run there)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per endpoint")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the duration is split into this many rounds over all endpoints in turn, so "
        "that drift of a shared machine falls on every endpoint alike",
    )
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    database_url = setup_django(args.database_url)
    token = api_token()
    database = describe_database()
    containment = describe_containment()
    base, audit_on_processes = start_server(database_url, audit=True, policy=POLICY_ON)
    audit_off_base, audit_off_processes = start_server(database_url, audit=False, policy=POLICY_ON)
    policy_off_base, policy_off_processes = start_server(
        database_url, audit=True, policy=POLICY_OFF
    )
    rounds: dict[str, list[dict[str, float]]] = {}
    round_s = max(1, args.duration // args.rounds)
    try:
        wait_until_up(f"{base}/v1/health")
        wait_until_up(f"{audit_off_base}/v1/health")
        wait_until_up(f"{policy_off_base}/v1/health")
        targets = {
            "echo": f"{base}/bench/echo",
            "bookkeeping": f"{base}/bench/bookkeeping",
            "governed": f"{base}/v1/analyze-execution",
            "audit off": f"{audit_off_base}/v1/analyze-execution",
            "policy off": f"{policy_off_base}/v1/analyze-execution",
        }
        for url in targets.values():
            wrk(url, token, 2, args.connections)  # warm-up: connections, caches, children
        for _ in range(args.rounds):
            for name, url in targets.items():
                rounds.setdefault(name, []).append(wrk(url, token, round_s, args.connections))
        sealing_lag = seconds_until_sealed()
    finally:
        for process in (*audit_on_processes, *audit_off_processes, *policy_off_processes):
            process.terminate()
            process.wait(timeout=30)
    results = {name: combine(measured) for name, measured in rounds.items()}

    print(
        f"http_execution: gunicorn 2 sync workers, wrk -t2 -c{args.connections}, "
        f"{args.rounds} rounds of {round_s} s per endpoint, endpoints in turn"
    )
    print(f"database: {database}")
    print(f"plugins: {containment}")
    print(f"{'endpoint':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, figures in results.items():
        print(
            f"{name:12} {figures['rps']:9.0f} {figures['p50']:8.2f} {figures['p99']:8.2f} "
            f"{figures['non_2xx']:8.0f}"
        )
    governed = results["governed"]["rps"]
    ratio = governed / results["bookkeeping"]["rps"]
    print(
        f"governed / bookkeeping: {ratio:.2f}x (target >= {TARGET_RATIO}); "
        f"governed / echo: {governed / results['echo']['rps']:.2f}x"
    )
    audit_ratio = governed / results["audit off"]["rps"]
    print(f"audit on / audit off: {audit_ratio:.3f}x (target >= {AUDIT_TARGET_RATIO})")
    policy_ratio = governed / results["policy off"]["rps"]
    print(f"policy on / policy off: {policy_ratio:.3f}x (target >= {POLICY_TARGET_RATIO})")
    lag = "more than 120 s" if sealing_lag is None else f"{sealing_lag:.1f} s"
    print(f"every audit entry sealed {lag} after the last round")


if __name__ == "__main__":
    main()
