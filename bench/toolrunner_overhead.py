"""What does governance cost per execution?

Runs a no-op plugin N times each way, in one process and one run:
  (a) the bare call: the plugin's undecorated function, no validation, no thread;
  (b) ToolRunner with metrics recorded in SQLite (WAL, synchronous=NORMAL);
  (c) ToolRunner with metrics recording switched off.
Prints p50/p99 per execution and the overhead of (b) and (c) over (a).

    .venv/bin/python bench/toolrunner_overhead.py [--iterations 5000]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable

from _django import setup_django  # bench/ is on sys.path when run as a script

TARGET_C_P50_US = 50.0
TARGET_B_P50_US = 1000.0


def measure(call: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):  # warm up caches, threads, the connection
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000.0)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    database_url = setup_django()

    from bench_app import BenchNoOpPlugin, NoOpInput

    from plugins.registry import PluginRegistry
    from plugins.runtime.tool_runner import ToolRunner

    with_metrics = PluginRegistry(record_metrics=True)
    plugin = with_metrics.register(BenchNoOpPlugin)
    without_metrics = PluginRegistry(record_metrics=False)
    without_metrics.register(BenchNoOpPlugin)
    governed = ToolRunner(registry=with_metrics)
    ungoverned_metrics = ToolRunner(registry=without_metrics)
    bare_run = inspect.unwrap(type(plugin).run)  # the plugin's own function, unguarded
    payload = NoOpInput()

    results = {
        "(a) bare call": measure(lambda: bare_run(plugin, payload), args.iterations),
        "(b) ToolRunner + SQLite metrics": measure(
            lambda: governed.run("bench_noop", {}), args.iterations
        ),
        "(c) ToolRunner, metrics off": measure(
            lambda: ungoverned_metrics.run("bench_noop", {}), args.iterations
        ),
    }
    assert governed.run("bench_noop", {}) == ({}, None)

    print(f"toolrunner_overhead: {args.iterations} executions each, database {database_url}")
    print("journal mode: WAL, synchronous=NORMAL; times in microseconds per execution")
    print(f"{'variant':34} {'p50':>10} {'p99':>10} {'mean':>10}")
    p50 = {label: percentile(samples, 0.5) for label, samples in results.items()}
    for label, samples in results.items():
        print(
            f"{label:34} {p50[label]:10.1f} {percentile(samples, 0.99):10.1f} "
            f"{statistics.fmean(samples):10.1f}"
        )
    bare_p50, metrics_p50, no_metrics_p50 = p50.values()
    print(
        f"overhead over (a) at p50: (b) {metrics_p50 - bare_p50:.1f} us "
        f"(target <= {TARGET_B_P50_US:.0f}), (c) {no_metrics_p50 - bare_p50:.1f} us "
        f"(target <= {TARGET_C_P50_US:.0f})"
    )
    print(
        f"ratio at p50: (b)/(a) {metrics_p50 / bare_p50:.0f}x, "
        f"(c)/(a) {no_metrics_p50 / bare_p50:.0f}x, (b)/(c) {metrics_p50 / no_metrics_p50:.1f}x"
    )


if __name__ == "__main__":
    main()
