"""Benchmark-only code: a no-op task and two bare baseline views (the plugin: bench_plugins.py).

Nothing here is part of the product. The baselines deliberately skip governance
(no validation, no metrics, status written directly) to measure what it costs;
the scanner's configuration excludes this folder for that reason.
"""

from __future__ import annotations

import importlib
import os
import time
from datetime import timedelta
from typing import Any, cast

from django.db import transaction
from django.urls import include, path
from django.utils import timezone
from django_tasks import task
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import Job


@task()
def bare_noop_task() -> None:
    """The bare django-tasks baseline: a task that does nothing."""


BARE_TIMES_KEY = "bench:bare_counted_task:finished"


@task()
def bare_counted_task() -> None:
    """The bare baseline on Celery, where a task leaves no row: it notes its finish in Redis.

    One RPUSH to the broker's Redis (bench/worker_throughput.py reads the times).
    """
    global _redis
    if _redis is None:
        _redis = broker_redis()
    _redis.rpush(BARE_TIMES_KEY, time.time())


_redis: Any = None


def broker_redis() -> Any:
    """A client of the broker's Redis (redis-py comes with the celery extra)."""
    return importlib.import_module("redis").Redis.from_url(os.environ["CELERY_BROKER_URL"])


class BareEchoView(APIView):
    """Same authentication as the API; returns the request body."""

    def post(self, request: Request) -> Response:
        return Response(request.data)


class BareBookkeepingView(APIView):
    """The naive job bookkeeping: create, mark RUNNING, mark SUCCESS, three commits."""

    def post(self, request: Request) -> Response:
        data = request.data
        with transaction.atomic():
            job = Job.objects.create(
                plugin_name=data["plugin"],
                input_payload=data["payload"],
                requested_by=cast(Any, request.user),
            )
        with transaction.atomic():
            # A lease, or a worker's lease monitor would recover the job meanwhile.
            Job.objects.filter(pk=job.pk).update(
                status="RUNNING", lease_expires_at=timezone.now() + timedelta(hours=1)
            )
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(status="SUCCESS", result={})
        return Response({"job_id": str(job.pk), "status": "SUCCESS", "result": {}})


urlpatterns = [
    path("bench/echo", BareEchoView.as_view()),
    path("bench/bookkeeping", BareBookkeepingView.as_view()),
    path("", include("project.urls")),
]
