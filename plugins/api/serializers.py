"""Response shapes of the plugins API (also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from plugins.models import PluginMetrics
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
    max_artifact_bytes = serializers.IntegerField(
        help_text="Largest file it may return with a result: its own limit, at most the "
        "operator's ARTIFACT_MAX_BYTES (plugins.md#artifacts)."
    )
    max_artifacts_total_bytes = serializers.IntegerField(
        help_text="Largest sum of the files one execution returns (ARTIFACT_MAX_TOTAL_BYTES)."
    )
    max_attempts = serializers.IntegerField()
    max_concurrency = serializers.IntegerField(
        allow_null=True,
        help_text="At most this many of its executions run at once, fleet-wide; null: no cap.",
    )
    network = serializers.BooleanField(
        help_text="May open TCP connections: it asks for it and the operator allows it."
    )
    fresh_process = serializers.BooleanField(help_text="A new process for every execution.")
    read_paths = serializers.ListField(
        child=serializers.CharField(),
        help_text="What it may read besides the interpreter and the installed packages.",
    )


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
    may_run = serializers.BooleanField(
        help_text="Whether you may run it (a grant, open access, or a superuser)."
    )
