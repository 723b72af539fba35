"""What does governance cost per execution, in thread isolation and in sandboxed hosts?

Runs a no-op plugin N times each way, in one process and one run:
  (a) the bare call: the plugin's undecorated function, no validation, no thread;
  ToolRunner in THREAD isolation, metrics persisted in SQLite (WAL, synchronous=NORMAL)
      and with metrics recording off;
  ToolRunner in PROCESS isolation (the default): a sandboxed host of the plugin's own,
      the same two ways, and once with the sandbox off (what the confinement costs
      per execution: it is set up once per host, so nothing, it should be);
and two baselines: a no-op function's round trip through a
concurrent.futures.ThreadPoolExecutor(1), and one JSON frame each way through a pair
of pipes to a bare Python child (what any process round trip costs on this machine).
The variants are measured in interleaved rounds, so drift on a noisy machine falls
on all of them alike. Prints p50/p99/mean per execution and what a sandboxed host
adds over thread mode at p50; then, measured apart, how long a host takes to start,
an execution of a ``fresh_process`` plugin (a new host each time, started ahead),
and emptying the per-execution temporary directory.

    .venv/bin/python bench/toolrunner_overhead.py [--iterations 5000] [--starts 20]

The API's rate limits are off (bench/_django.py's THROTTLES_OFF); no request is made.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from _django import describe_database, setup_django  # bench/ is on sys.path as a script

TARGET_PROCESS_OVER_THREAD_P50_US = 250.0
ROUNDS = 10
_ECHO_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[3])
from plugins.runtime.isolation import channel
requests, replies = int(sys.argv[1]), int(sys.argv[2])
while True:
    channel.send(replies, channel.receive(requests, 1 << 20))
"""


def measure(
    variants: dict[str, Callable[[], object]], iterations: int, rounds: int = ROUNDS
) -> dict[str, list[float]]:
    """Time each variant ``iterations`` times, round-robin in ``rounds`` blocks (microseconds)."""
    for call in variants.values():  # warm up caches, threads, hosts, the connection
        for _ in range(min(200, iterations)):
            call()
    samples: dict[str, list[float]] = {label: [] for label in variants}
    per_round = max(1, iterations // rounds)
    while any(len(taken) < iterations for taken in samples.values()):
        for label, call in variants.items():
            taken = samples[label]
            for _ in range(min(per_round, iterations - len(taken))):
                started = time.perf_counter_ns()
                call()
                taken.append((time.perf_counter_ns() - started) / 1000.0)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def pipe_echo() -> tuple[Callable[[], object], Callable[[], None]]:
    """A bare child that echoes frames: (one round trip, stop)."""
    from plugins.runtime.isolation import channel

    child_requests, requests = os.pipe()
    replies, child_replies = os.pipe()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-I", "-c", _ECHO_CHILD, str(child_requests), str(child_replies), root],
        pass_fds=(child_requests, child_replies),
    )
    os.close(child_requests)
    os.close(child_replies)

    def round_trip() -> object:
        channel.send(requests, b'{"function":"validate_and_run","args":[{},1048576,""]}')
        return channel.receive(replies, 1 << 20)

    def stop() -> None:
        child.kill()
        child.wait()
        os.close(requests)
        os.close(replies)

    return round_trip, stop


def host_starts(plugin: object, limits: object, count: int) -> list[float]:
    """Milliseconds from starting a host to its ready message, ``count`` times."""
    from plugins.runtime.isolation.process import ProcessIsolation, _Host

    isolation = ProcessIsolation()
    spec = isolation._spec(plugin, limits)  # type: ignore[arg-type]
    times = []
    for _ in range(count):
        started = time.perf_counter()
        host = _Host(spec)
        host.wait_ready()
        times.append((time.perf_counter() - started) * 1000.0)
        host.kill()
    return times


def empty_directory_us(count: int) -> tuple[float, float]:
    """Microseconds to empty a host's directory (host.py's ``_empty``): empty, and one file."""
    from plugins.runtime.isolation.host import _empty

    here, tmpdir = os.getcwd(), os.environ.get("TMPDIR")
    folder = tempfile.mkdtemp(prefix="bench-empty-")
    try:
        idle, used = [], []
        for _ in range(count):
            started = time.perf_counter_ns()
            _empty(folder)
            idle.append((time.perf_counter_ns() - started) / 1000.0)
            with open(os.path.join(folder, "scratch"), "wb") as scratch:
                scratch.write(b"x" * 4096)
            started = time.perf_counter_ns()
            _empty(folder)
            used.append((time.perf_counter_ns() - started) / 1000.0)
    finally:  # _empty moved this process into the folder, as it does a host
        os.chdir(here)
        tempfile.tempdir = None
        if tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmpdir
        shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(idle), statistics.median(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--starts", type=int, default=20, help="host starts and fresh runs")
    args = parser.parse_args()
    database_url = setup_django()

    from bench_plugins import BenchNoOpPlugin, FreshNoOpPlugin, NoOpInput

    from plugins.registry import PluginRegistry
    from plugins.runtime.isolation.process import ProcessIsolation, SandboxSettings
    from plugins.runtime.limits import ExecutionLimits, IsolationKind
    from plugins.runtime.tool_runner import ToolRunner

    sandboxed = ProcessIsolation()
    unconfined = ProcessIsolation(sandbox=SandboxSettings(enabled=False))

    def runner(
        isolation: IsolationKind,
        *,
        metrics: bool,
        hosts: ProcessIsolation = sandboxed,
        plugin: type[BenchNoOpPlugin] = BenchNoOpPlugin,
    ) -> Callable[[], object]:
        registry = PluginRegistry(
            record_metrics=metrics, defaults=ExecutionLimits(isolation=isolation)
        )
        registry.register(plugin)
        tool_runner = ToolRunner(registry=registry, isolations={IsolationKind.PROCESS: hosts})
        return lambda: tool_runner.run(plugin.name, {})

    plugin = BenchNoOpPlugin()
    bare_run = inspect.unwrap(BenchNoOpPlugin.run)  # the plugin's own function, unguarded
    payload = NoOpInput()
    threads = ThreadPoolExecutor(max_workers=1)
    echo, stop_echo = pipe_echo()

    variants: dict[str, Callable[[], object]] = {
        "(a) bare call": lambda: bare_run(plugin, payload),
        "ThreadPoolExecutor(1) round trip": lambda: threads.submit(lambda: None).result(),
        "pipe round trip to a child": echo,
        "THREAD, metrics persisted": runner(IsolationKind.THREAD, metrics=True),
        "THREAD, metrics off": runner(IsolationKind.THREAD, metrics=False),
        "PROCESS, metrics persisted": runner(IsolationKind.PROCESS, metrics=True),
        "PROCESS, metrics off": runner(IsolationKind.PROCESS, metrics=False),
        "PROCESS, metrics off, unconfined": runner(
            IsolationKind.PROCESS, metrics=False, hosts=unconfined
        ),
    }
    fresh = runner(IsolationKind.PROCESS, metrics=False, plugin=FreshNoOpPlugin)
    try:
        for label, call in variants.items():
            if label.startswith(("THREAD", "PROCESS")):
                assert call() == ({}, None), label
        results = measure(variants, args.iterations)
        limits = ExecutionLimits()
        starts = host_starts(plugin, limits, args.starts)
        assert fresh() == ({}, None)
        fresh_times = []
        for _ in range(args.starts):
            time.sleep(1.0)  # its next host is started ahead of demand, as between requests
            started = time.perf_counter()
            assert fresh() == ({}, None)
            fresh_times.append((time.perf_counter() - started) * 1e6)
        empty_idle, empty_used = empty_directory_us(1000)
    finally:
        threads.shutdown()
        stop_echo()
        sandboxed.shutdown()
        unconfined.shutdown()

    print(f"toolrunner_overhead: {args.iterations} executions each, database {database_url}")
    print(f"database: {describe_database()}; times in microseconds per execution")
    print(
        "calls are sequential, as in a db_worker or a gunicorn sync worker; PROCESS rows run "
        f"in one warm host (replaced every {ProcessIsolation().max_executions_per_host} "
        "executions); sandbox: " + str(SandboxSettings().describe())
    )
    print(f"{'variant':34} {'p50':>10} {'p99':>10} {'mean':>10} {'max':>10}")
    p50 = {label: percentile(samples, 0.5) for label, samples in results.items()}
    for label, samples in results.items():
        print(
            f"{label:34} {p50[label]:10.1f} {percentile(samples, 0.99):10.1f} "
            f"{statistics.fmean(samples):10.1f} {max(samples):10.1f}"
        )
    bare = p50["(a) bare call"]
    print(
        "overhead over (a) at p50: "
        + ", ".join(
            f"{label} {p50[label] - bare:.1f} us"
            for label in p50
            if label.startswith(("THREAD", "PROCESS"))
        )
    )
    baseline_gap = p50["pipe round trip to a child"] - p50["ThreadPoolExecutor(1) round trip"]
    for metrics in ("metrics off", "metrics persisted"):
        added = p50[f"PROCESS, {metrics}"] - p50[f"THREAD, {metrics}"]
        verdict = "meets" if added <= TARGET_PROCESS_OVER_THREAD_P50_US else "MISSES"
        print(
            f"a sandboxed host adds {added:.1f} us p50 over thread mode ({metrics}): "
            f"{verdict} the target of <= {TARGET_PROCESS_OVER_THREAD_P50_US:.0f} us; "
            f"{added - baseline_gap:.1f} us beyond the bare pipe round trip's own gap "
            f"({baseline_gap:.1f} us)"
        )
    confinement = p50["PROCESS, metrics off"] - p50["PROCESS, metrics off, unconfined"]
    print(f"the confinement costs {confinement:.1f} us p50 per execution (sandboxed - unconfined)")
    print(
        f"host start, to ready (interpreter, confinement, plugin import), {args.starts} starts: "
        f"median {statistics.median(starts):.0f} ms, max {max(starts):.0f} ms"
    )
    print(
        f"fresh_process execution (its host started ahead), {args.starts} runs: "
        f"median {statistics.median(fresh_times):.0f} us, max {max(fresh_times):.0f} us"
    )
    print(
        f"emptying the per-execution temporary directory: {empty_idle:.1f} us when empty, "
        f"{empty_used:.1f} us with one 4 KiB file (median of 1000)"
    )


if __name__ == "__main__":
    main()
