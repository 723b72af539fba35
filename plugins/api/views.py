"""The plugins' endpoints: GET /v1/plugins, /v1/plugins/{name}, and the /metrics page.

Plain DRF, no import of the project's ``api/`` layer (which sits above this app):
an error is raised as an APIException, and the project's exception handler
answers it with the envelope; ``error_type`` names the envelope's type.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import exceptions, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from plugins.api.serializers import PluginSerializer
from plugins.errors.error_envelope import ErrorType, build_error_envelope
from plugins.errors.exceptions import PluginNotFoundError
from plugins.metrics.access import metrics_refusal
from plugins.metrics.exposition import render_metrics
from plugins.models import PluginMetrics
from plugins.registry import PluginEntry, get_registry


class NoSuchPlugin(exceptions.NotFound):
    """A path that names no registered plugin: a 404, of type PluginNotFound."""

    error_type = ErrorType.PLUGIN_NOT_FOUND


def runnable_plugins(user: Any, names: list[str]) -> set[str]:
    """Of ``names``, those ``user`` may run, as the policy that ``PLUGIN_RUNNABLE`` names says.

    The policy is the execution app's (grants), which sits above this app: a setting
    names it, as AUTHENTICATION_BACKENDS names an authentication backend.
    """
    return set(import_string(settings.PLUGIN_RUNNABLE)(user, names))


def describe_plugin(
    entry: PluginEntry, metrics: PluginMetrics | None, *, may_run: bool = True
) -> dict[str, Any]:
    """What PluginSerializer shows of a registry entry and its persisted metrics."""
    plugin = entry.plugin
    limits = None
    if plugin is not None:
        limits = {
            **asdict(get_registry().limits_for(plugin)),
            "max_attempts": plugin.max_attempts,
            "max_concurrency": plugin.max_concurrency,
        }
    return {
        "name": entry.name,
        "version": plugin.version if plugin else None,
        "description": plugin.description if plugin else "",
        "state": entry.state,
        "reason": entry.reason,
        "input_schema": plugin.Input.model_json_schema() if plugin else None,
        # What a result holds: a serialized Output (its computed fields included).
        "output_schema": plugin.Output.model_json_schema(mode="serialization") if plugin else None,
        "limits": limits,
        "metrics": metrics,
        "may_run": may_run,
    }


class PluginViewSet(viewsets.ViewSet):
    """Registered plugins, including unavailable ones with the reason."""

    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    @extend_schema(
        responses=PluginSerializer(many=True),
        description="The plugins you may run; staff see every plugin, with `may_run`.",
    )
    def list(self, request: Request) -> Response:
        entries = get_registry().get_status()
        runnable = runnable_plugins(request.user, [entry.name for entry in entries])
        staff = bool(getattr(request.user, "is_staff", False))
        metrics = {m.plugin_name: m for m in PluginMetrics.objects.all()}
        return Response(
            [
                PluginSerializer(
                    describe_plugin(entry, metrics.get(entry.name), may_run=entry.name in runnable)
                ).data
                for entry in entries
                if staff or entry.name in runnable
            ]
        )

    @extend_schema(responses=PluginSerializer)
    def retrieve(self, request: Request, name: str) -> Response:
        try:
            entry = get_registry().get_entry(name)
        except PluginNotFoundError as exc:  # a resource path that names nothing: 404
            raise NoSuchPlugin(exc.message) from exc
        may_run = entry.name in runnable_plugins(request.user, [entry.name])
        if not (may_run or getattr(request.user, "is_staff", False)):
            raise NoSuchPlugin(f"No plugin named {name!r} is registered")  # nor may they know
        metrics = PluginMetrics.objects.filter(plugin_name=entry.name).first()
        return Response(PluginSerializer(describe_plugin(entry, metrics, may_run=may_run)).data)


@csrf_exempt  # a POST is a 405, not a CSRF failure: nothing here writes
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint: the page plugins/metrics renders, to whom may read it."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        envelope = build_error_envelope(refusal.error_type, refusal.message)
        response = JsonResponse({"detail": envelope["error"]}, status=refusal.status)
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
