"""Request and response shapes of the execution API (also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from execution.models import Job, JobStatus
from plugins.errors.error_envelope import ErrorType


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects fields it does not know: a typo must not be silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ExecutionRequestSerializer(StrictSerializer):
    plugin = StrictCharField(max_length=100, help_text="Registered plugin name.")
    payload = serializers.DictField(help_text="Input of the plugin, checked against its schema.")


class ExecutionResultSerializer(serializers.Serializer[Job]):
    job_id = serializers.UUIDField(source="id")
    plugin = serializers.CharField(source="plugin_name")
    plugin_version = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    result = serializers.JSONField()
    elapsed_ms = serializers.FloatField()


class ErrorSerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=[(t.value, t.value) for t in ErrorType])
    message = serializers.CharField()
    details = serializers.JSONField()
    plugin = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()


class ErrorResponseSerializer(serializers.Serializer[Any]):
    detail = ErrorSerializer()


class AttemptSerializer(serializers.Serializer[Any]):
    attempt = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField()
    error = ErrorSerializer(allow_null=True)


class JobSerializer(serializers.ModelSerializer[Job]):
    plugin = serializers.CharField(source="plugin_name")
    input = serializers.JSONField(source="input_payload")
    error = ErrorSerializer(source="public_error", allow_null=True)
    attempts = AttemptSerializer(many=True, help_text="Earlier attempts that ended unfinished.")
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="While PENDING for another attempt: when it may start."
    )
    requested_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "plugin",
            "plugin_version",
            "status",
            "input",
            "result",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "elapsed_ms",
            "attempt",
            "max_attempts",
            "next_attempt_at",
            "attempts",
        ]
        read_only_fields = fields


class JobFilterSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    plugin = StrictCharField(max_length=200, required=False)
    page = serializers.IntegerField(min_value=1, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=200, required=False)


class HealthSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    checks = serializers.DictField()
