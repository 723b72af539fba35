"""What does governance cost per execution, in thread and in process isolation?

Runs a no-op plugin N times each way, in one process and one run:
  (a) the bare call: the plugin's undecorated function, no validation, no thread;
  ToolRunner in THREAD isolation, metrics persisted in SQLite (WAL, synchronous=NORMAL)
      and with metrics recording off;
  ToolRunner in PROCESS isolation (the default), the same two ways, through the
      project's process-wide pool of plugin children;
and two library baselines: a no-op function's round trip through a
concurrent.futures.ThreadPoolExecutor(1) and through a bare pebble.ProcessPool(1)
on a forkserver context. The variants are measured in interleaved rounds, so
drift on a noisy machine falls on all of them alike. Prints p50/p99/mean per
execution and what process isolation adds over thread mode at p50.

PLUGIN_PROCESS_POOL_SIZE is set to 1 before Django starts (unless --pool-size says
otherwise): the calls are sequential, like a db_worker or a gunicorn sync worker.

    .venv/bin/python bench/toolrunner_overhead.py [--iterations 5000] [--pool-size 1]
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from _django import describe_database, setup_django  # bench/ is on sys.path as a script

TARGET_PROCESS_OVER_THREAD_P50_US = 250.0
REFERENCE_PEBBLE_P50_US = 110.0  # a bare pebble round trip on the machine the target was set on
REFERENCE_THREAD_POOL_P50_US = 50.0
ROUNDS = 10


def noop() -> None:
    """The library baselines' payload; module level, so a child process can import it."""


def measure(
    variants: dict[str, Callable[[], object]], iterations: int, rounds: int = ROUNDS
) -> dict[str, list[float]]:
    """Time each variant ``iterations`` times, round-robin in ``rounds`` blocks (microseconds)."""
    for call in variants.values():  # warm up caches, threads, children, the connection
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument(
        "--pool-size",
        type=int,
        default=1,
        help="PLUGIN_PROCESS_POOL_SIZE for the process-wide pool (default 1)",
    )
    parser.add_argument(
        "--no-pool-of-two",
        action="store_true",
        help="skip the extra PROCESS variant through a second pool of two children",
    )
    args = parser.parse_args()
    os.environ["PLUGIN_PROCESS_POOL_SIZE"] = str(args.pool_size)  # read by Django's settings
    database_url = setup_django()

    import pebble
    from bench_app import BenchNoOpPlugin, NoOpInput
    from django.conf import settings

    from plugins.registry import PluginRegistry
    from plugins.runtime.isolation.process import ProcessIsolation
    from plugins.runtime.limits import ExecutionLimits, IsolationKind
    from plugins.runtime.tool_runner import ToolRunner

    def runner(
        isolation: IsolationKind, *, metrics: bool, processes: ProcessIsolation | None = None
    ) -> Callable[[], object]:
        registry = PluginRegistry(
            record_metrics=metrics, defaults=ExecutionLimits(isolation=isolation)
        )
        registry.register(BenchNoOpPlugin)
        isolations = {IsolationKind.PROCESS: processes} if processes is not None else None
        tool_runner = ToolRunner(registry=registry, isolations=isolations)
        return lambda: tool_runner.run("bench_noop", {})

    plugin = BenchNoOpPlugin()
    bare_run = inspect.unwrap(BenchNoOpPlugin.run)  # the plugin's own function, unguarded
    payload = NoOpInput()

    process_metrics_on = runner(IsolationKind.PROCESS, metrics=True)
    # Start the project's pool first: it sets the forkserver's preload (Django, the
    # runtime) and the forkserver is shared by every pool of this process.
    assert process_metrics_on() == ({}, None)
    pool = ProcessIsolation.shared()
    threads = ThreadPoolExecutor(max_workers=1)
    bare_pebble = pebble.ProcessPool(
        max_workers=1, context=multiprocessing.get_context("forkserver")
    )
    second_pool: ProcessIsolation | None = None
    if not args.no_pool_of_two and pool.size != 2:
        second_pool = ProcessIsolation(
            size=2,
            max_tasks_per_child=settings.PLUGIN_MAX_TASKS_PER_CHILD,
            kill_grace_s=settings.PLUGIN_KILL_GRACE_S,
        )

    variants: dict[str, Callable[[], object]] = {
        "(a) bare call": lambda: bare_run(plugin, payload),
        "ThreadPoolExecutor(1) round trip": lambda: threads.submit(noop).result(),
        "pebble ProcessPool(1) round trip": lambda: bare_pebble.schedule(noop).result(),
        "THREAD, metrics persisted": runner(IsolationKind.THREAD, metrics=True),
        "THREAD, metrics off": runner(IsolationKind.THREAD, metrics=False),
        "PROCESS, metrics persisted": process_metrics_on,
        "PROCESS, metrics off": runner(IsolationKind.PROCESS, metrics=False),
    }
    if second_pool is not None:
        variants["PROCESS, metrics off, pool of 2"] = runner(
            IsolationKind.PROCESS, metrics=False, processes=second_pool
        )
    try:
        for label, call in variants.items():
            if label.startswith(("THREAD", "PROCESS")):
                assert call() == ({}, None), label
        results = measure(variants, args.iterations)
    finally:
        threads.shutdown()
        bare_pebble.stop()
        bare_pebble.join()
        if second_pool is not None:
            second_pool.shutdown()
        pool.shutdown()

    print(f"toolrunner_overhead: {args.iterations} executions each, database {database_url}")
    print(f"database: {describe_database()}; times in microseconds per execution")
    print(
        f"PLUGIN_PROCESS_POOL_SIZE={args.pool_size} (calls are sequential, as in a db_worker "
        f"or a gunicorn sync worker); children recycled every "
        f"{settings.PLUGIN_MAX_TASKS_PER_CHILD} tasks (PLUGIN_MAX_TASKS_PER_CHILD), "
        "which shows in the PROCESS rows' mean and max; the bare pebble pool never recycles"
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
    library_gap = p50["pebble ProcessPool(1) round trip"] - p50["ThreadPoolExecutor(1) round trip"]
    reference_gap = REFERENCE_PEBBLE_P50_US - REFERENCE_THREAD_POOL_P50_US
    for metrics in ("metrics off", "metrics persisted"):
        added = p50[f"PROCESS, {metrics}"] - p50[f"THREAD, {metrics}"]
        verdict = "meets" if added <= TARGET_PROCESS_OVER_THREAD_P50_US else "MISSES"
        print(
            f"process isolation adds {added:.1f} us p50 over thread mode ({metrics}): "
            f"{verdict} the target of <= {TARGET_PROCESS_OVER_THREAD_P50_US:.0f} us; "
            f"{added - library_gap:.1f} us beyond the libraries' own gap"
        )
    print(
        f"libraries on this machine: bare pebble minus bare thread pool {library_gap:.1f} us p50 "
        f"(pebble {p50['pebble ProcessPool(1) round trip']:.1f}, thread pool "
        f"{p50['ThreadPoolExecutor(1) round trip']:.1f}); on the reference machine "
        f"~{reference_gap:.0f} us (~{REFERENCE_PEBBLE_P50_US:.0f} and "
        f"~{REFERENCE_THREAD_POOL_P50_US:.0f})"
    )


if __name__ == "__main__":
    main()
