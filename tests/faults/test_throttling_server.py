"""Rate limits across real gunicorn workers: parallel requests at a limit of K pass exactly K.

Each gunicorn worker is a process of its own with its own connection, so a limit
kept in a process (or read, then written) would let more through. The limits'
periods are a day: no request gets a refill while the test runs. On SQLite and,
with DATABASE_URL, on PostgreSQL (the suite runs on both).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from execution.models import Job
from execution.policy.throttle_models import ThrottleBucket
from tests.faults.conftest import Processes, Server

JOB = {"plugin": "echo", "payload": {"message": "hi"}}


def at_once(count: int, threads: int, send: Any) -> Counter[int]:
    """The statuses of ``count`` calls of ``send(i)`` from ``threads`` threads, started together."""
    barrier = threading.Barrier(threads)

    def first_together(index: int) -> int:
        if index < threads:
            barrier.wait(timeout=60)
        return int(send(index))

    with ThreadPoolExecutor(threads) as pool:
        return Counter(pool.map(first_together, range(count)))


def with_token(server: Server, token: str) -> Server:
    return Server(server.process, server.base, token)


def test_parallel_submits_at_a_limit_of_k_accept_exactly_k(processes: Processes, token: str):
    server = processes.server(
        workers=2, API_THROTTLE_BURST="10/day", API_THROTTLE_SUSTAINED="1000/day"
    )
    server.token = token
    statuses = at_once(40, 20, lambda _: server.request("POST", "/v1/jobs", JOB)[0])
    assert statuses == {202: 10, 429: 30}
    assert Job.objects.count() == 10
    status, body = server.request("POST", "/v1/analyze-execution", JOB)
    assert status == 429
    assert body["detail"]["details"]["limit"] == "burst"
    # Both rates counted the 10 allowed alone (10 intervals of 8,640 s and of 86.4 s from
    # the first request's time): a refused request spends neither.
    bucket = ThrottleBucket.objects.get(scope="execution")
    assert bucket.burst_tat - bucket.sustained_tat == 10 * (8_640 - 86.4) * 1_000_000
    assert bucket.refused == 31


def test_parallel_quick_requests_at_a_limit_of_k_pass_exactly_k(processes: Processes, token: str):
    """Requests that end right after the check (404: no such job), 16 at a time, so checks overlap.

    A check that reads, then writes, lets a few more through here (53 of 200 at a
    limit of 50, tried once); the one upsert lets exactly 50.
    """
    server = processes.server(
        workers=2, GUNICORN_CMD_ARGS="--threads 8", API_THROTTLE_BURST="50/day"
    )
    server.token = token
    statuses = at_once(
        200, 20, lambda _: server.request("POST", f"/v1/jobs/{uuid.uuid4()}/cancel")[0]
    )
    assert statuses == {404: 50, 429: 150}
    assert ThrottleBucket.objects.get(scope="cancel").refused == 150


def test_random_tokens_from_one_address_get_429_past_the_limit(processes: Processes, token: str):
    server = processes.server(workers=2, API_THROTTLE_AUTH_FAILURES="30/day")
    statuses = at_once(
        500, 16, lambda _: with_token(server, secrets.token_hex(20)).request("GET", "/v1/jobs")[0]
    )
    assert statuses == {401: 30, 429: 470}
    # Over the limit, the address gets no answer about any token, the right one included.
    assert with_token(server, token).request("GET", "/v1/jobs")[0] == 429
    assert server.alive_and_healthy()  # /v1/health asks for no credentials
