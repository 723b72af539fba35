"""GET /v1/plugins and /v1/plugins/{name}: what can run, its schemas and its metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import error_response
from plugins.errors.error_envelope import ErrorType
from plugins.errors.exceptions import PluginNotFoundError
from plugins.models import PluginMetrics
from plugins.registry import PluginEntry, get_registry
from plugins.runtime.limits import IsolationKind


class PluginMetricsSerializer(serializers.ModelSerializer[PluginMetrics]):
    execution_count = serializers.IntegerField(read_only=True)
    error_rate = serializers.FloatField(read_only=True)

    class Meta:
        model = PluginMetrics
        fields = [
            "success_count",
            "error_count",
            "execution_count",
            "error_rate",
            "avg_execution_time_ms",
            "last_execution_time_ms",
            "last_used",
        ]


class PluginLimitsSerializer(serializers.Serializer[dict[str, Any]]):
    isolation = serializers.ChoiceField(choices=[mode.value for mode in IsolationKind])
    timeout_s = serializers.FloatField()
    max_memory_mb = serializers.IntegerField(allow_null=True)
    max_result_bytes = serializers.IntegerField()
    max_attempts = serializers.IntegerField()


@extend_schema_field({"type": "object", "description": "A JSON Schema."})
class JSONSchemaField(serializers.JSONField):
    pass


class PluginSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    version = serializers.CharField(allow_null=True)
    description = serializers.CharField()
    state = serializers.ChoiceField(choices=["AVAILABLE", "UNAVAILABLE"])
    reason = serializers.CharField(allow_blank=True)
    input_schema = JSONSchemaField(allow_null=True)
    output_schema = JSONSchemaField(allow_null=True)
    limits = PluginLimitsSerializer(allow_null=True, help_text="Where it runs and its limits.")
    metrics = PluginMetricsSerializer(allow_null=True)


def describe_plugin(entry: PluginEntry, metrics: PluginMetrics | None) -> dict[str, Any]:
    plugin = entry.plugin
    limits = None
    if plugin is not None:
        limits = {**asdict(get_registry().limits_for(plugin)), "max_attempts": plugin.max_attempts}
    return {
        "name": entry.name,
        "version": plugin.version if plugin else None,
        "description": plugin.description if plugin else "",
        "state": entry.state,
        "reason": entry.reason,
        "input_schema": plugin.Input.model_json_schema() if plugin else None,
        "output_schema": plugin.Output.model_json_schema() if plugin else None,
        "limits": limits,
        "metrics": metrics,
    }


class PluginViewSet(viewsets.ViewSet):
    """Registered plugins, including unavailable ones with the reason."""

    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    @extend_schema(responses=PluginSerializer(many=True))
    def list(self, request: Request) -> Response:
        entries = get_registry().get_status()
        metrics = {m.plugin_name: m for m in PluginMetrics.objects.all()}
        return Response(
            [
                PluginSerializer(describe_plugin(entry, metrics.get(entry.name))).data
                for entry in entries
            ]
        )

    @extend_schema(responses=PluginSerializer)
    def retrieve(self, request: Request, name: str) -> Response:
        try:
            entry = get_registry().get_entry(name)
        except PluginNotFoundError as exc:  # a resource path that names nothing: 404
            return error_response(ErrorType.PLUGIN_NOT_FOUND, exc.message, 404)
        metrics = PluginMetrics.objects.filter(plugin_name=entry.name).first()
        return Response(PluginSerializer(describe_plugin(entry, metrics)).data)
