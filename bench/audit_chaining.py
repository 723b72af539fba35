"""Why the audit chains entries in batches: recording then sealing, against chaining inline.

Each event is one transaction, as in the services (the state change's UPDATE
plus its entry), run by T threads at once:

  batched   the entry is one INSERT; a sealer chains the waiting entries later
            (its cost is measured after, per entry, and reported beside)
  inline    the entry is chained in the event's own transaction: the chain's row
            is locked, the entry inserted, read back, hashed and updated, the
            head moved, so every event in every process waits for that one row

    .venv/bin/python bench/audit_chaining.py [-n 3000] [--threads 1 4] [--database-url ...]

The API's rate limits are off (bench/_django.py's THROTTLES_OFF); no request is made.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

from _django import describe_database, setup_django


def run_events(n: int, threads: int, inline: bool) -> tuple[float, list[float]]:
    """``n`` events over ``threads`` threads; (wall seconds, per-event latencies in µs)."""
    from django.db import connections, transaction

    from execution.audit import chain
    from execution.audit.events import AuditEvent
    from execution.audit.recorder import record
    from execution.models import Job

    job = Job.objects.create(plugin_name="bench_noop")
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(count: int) -> None:
        mine = []
        barrier.wait()
        for _ in range(count):
            started = time.perf_counter()
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(attempt=1)  # the state change
                record(
                    AuditEvent.JOB_STARTED,
                    job_id=uuid.uuid4(),
                    plugin_name="bench_noop",
                    plugin_version="1",
                )
                if inline:
                    chain._seal_batch(1, "default")
            mine.append((time.perf_counter() - started) * 1e6)
        with lock:
            latencies.extend(mine)
        connections.close_all()

    workers = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="events per variant")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    setup_django(args.database_url)

    from execution.audit.chain import seal

    seal()  # begin the chain
    print(f"audit_chaining: {args.n} events per variant, each its own transaction")
    print(f"database: {describe_database()}")
    print(f"{'variant':24} {'threads':>7} {'events/s':>9} {'p50 µs':>8} {'p99 µs':>8}")
    for threads in args.threads:
        for inline in (False, True):
            wall, latencies = run_events(args.n, threads, inline)
            latencies.sort()
            name = "inline chaining" if inline else "batched (record only)"
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(
                f"{name:24} {threads:7} {len(latencies) / wall:9.0f} "
                f"{statistics.median(latencies):8.0f} {p99:8.0f}"
            )
            if not inline:
                started = time.perf_counter()
                sealed = seal(batch_size=2000).sealed
                per_entry = (time.perf_counter() - started) / max(sealed, 1) * 1e6
                print(f"{'  then sealing them':24} {'':7} {'':9} {per_entry:8.0f} per entry")


if __name__ == "__main__":
    main()
