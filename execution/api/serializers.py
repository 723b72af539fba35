"""Request and response shapes of the execution API (also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from execution.artifacts.models import JobArtifact
from execution.artifacts.services import artifacts_of
from execution.callbacks.destinations import DestinationRefused, check_callback_url
from execution.callbacks.models import CALLBACK_URL_MAX_LENGTH, CallbackState
from execution.callbacks.selectors import callback_for_owner
from execution.models import Job, JobStatus
from plugins.contract import MAX_PLUGIN_NAME_LENGTH
from plugins.progress import MAX_MESSAGE_CHARS


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


@extend_schema_field({"$ref": "#/components/schemas/Error"})
class ErrorField(serializers.JSONField):
    """A stored error envelope's public part (never its traceback)."""


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A plugin's input or result: always a JSON object."""


class ExecutionRequestSerializer(StrictSerializer):
    plugin = StrictCharField(max_length=MAX_PLUGIN_NAME_LENGTH, help_text="Registered plugin name.")
    payload = serializers.DictField(help_text="Input of the plugin, checked against its schema.")
    plugin_version = StrictCharField(
        max_length=100,
        required=False,
        help_text="Run only this version; another installed one fails the job "
        "(PluginVersionMismatch).",
    )


# Artifacts (execution/artifacts/): the files a job's plugin returned with its result.


class ArtifactSerializer(serializers.Serializer[JobArtifact]):
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")
    sha256 = serializers.CharField(help_text="SHA-256 of the bytes, in hex.")
    url = serializers.SerializerMethodField(help_text="Where to download it.")

    def get_url(self, artifact: JobArtifact) -> str:
        path = reverse("job-artifact", kwargs={"pk": artifact.job_id, "name": artifact.name})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ArtifactsMixin(serializers.Serializer[Job]):
    artifacts = serializers.SerializerMethodField(
        help_text="Files the plugin returned with its result (empty unless SUCCESS)."
    )

    @extend_schema_field(ArtifactSerializer(many=True))
    def get_artifacts(self, job: Job) -> Any:
        artifacts = artifacts_of(job)
        if not artifacts:  # nearly every job: no serializer to build
            return []
        return ArtifactSerializer(artifacts, many=True, context=self.context).data  # type: ignore[arg-type]


# Completion callbacks (docs/api.md, "Completion callbacks") ---------------------


class JobRequestSerializer(ExecutionRequestSerializer):
    """What POST /v1/jobs takes: an execution request, and where to POST the ended job."""

    callback_url = StrictCharField(
        max_length=CALLBACK_URL_MAX_LENGTH,
        required=False,
        help_text="Where to POST the job, signed (X-Signature), once it is final. An http(s) "
        "URL on a host of CALLBACK_ALLOWED_HOSTS, not resolving to a private address.",
    )

    def validate_callback_url(self, value: str) -> str:
        try:
            return check_callback_url(value)
        except DestinationRefused as exc:
            raise serializers.ValidationError(str(exc), code=exc.code) from None


class CallbackAttemptSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.FloatField(allow_null=True)
    status_code = serializers.IntegerField(
        allow_null=True, help_text="The receiver's HTTP status; null if none came."
    )
    error = serializers.CharField(help_text="Why the attempt failed; empty if it did not.")


class CallbackSerializer(serializers.Serializer[Any]):
    url = serializers.CharField()
    state = serializers.ChoiceField(choices=CallbackState.choices)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    attempts = CallbackAttemptSerializer(many=True, source="attempts.all")


class CallbackFieldMixin(serializers.Serializer[Any]):
    """``callback``: the job's completion callback, for its owner (null for anyone else)."""

    callback = serializers.SerializerMethodField(
        help_text="The completion callback and its delivery attempts; only its owner sees it."
    )

    @extend_schema_field(CallbackSerializer(allow_null=True))
    def get_callback(self, job: Job) -> dict[str, Any] | None:
        request = self.context.get("request")
        found = callback_for_owner(job, getattr(request, "user", None))
        return None if found is None else dict(CallbackSerializer(found).data)


class ExecutionResultSerializer(ArtifactsMixin, serializers.Serializer[Job]):
    job_id = serializers.UUIDField(source="id")
    plugin = serializers.CharField(source="plugin_name")
    plugin_version = serializers.CharField(help_text="The version that ran.")
    plugin_fingerprint = serializers.CharField(help_text="The code that ran (see Job).")
    status = serializers.ChoiceField(choices=[JobStatus.SUCCESS])
    result = JSONObjectField(help_text="The plugin's output, checked against its schema.")
    elapsed_ms = serializers.FloatField()


class AttemptSerializer(serializers.Serializer[Any]):
    attempt = serializers.IntegerField()
    plugin_version = serializers.CharField(required=False)
    plugin_fingerprint = serializers.CharField(required=False)
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField()
    error = ErrorField(allow_null=True)


# Progress (issue 20) ---------------------------------------------------------------


class JobProgressSerializer(serializers.Serializer[Any]):
    """The plugin's last progress report of the job's attempt."""

    done = serializers.IntegerField(min_value=0, help_text="Steps done, at most total.")
    total = serializers.IntegerField(min_value=1)
    message = serializers.CharField(
        allow_blank=True, max_length=MAX_MESSAGE_CHARS, help_text="What the plugin is doing."
    )
    updated_at = serializers.DateTimeField(help_text="When the report was written.")


class JobProgressMixin(serializers.Serializer[Job]):
    progress = serializers.SerializerMethodField(
        help_text="While RUNNING, the plugin's last report, written at most twice a second; "
        "a finished job keeps its last one. Null when the plugin reported none."
    )

    @extend_schema_field(JobProgressSerializer(allow_null=True))
    def get_progress(self, job: Job) -> dict[str, Any] | None:
        if job.progress is None:
            return None
        report = {**job.progress, "updated_at": job.progress_updated_at}
        return dict(JobProgressSerializer(report).data)


# --------------------------------------------------------------------------------------


class JobSummarySerializer(JobProgressMixin, serializers.ModelSerializer[Job]):
    """A job as lists show it: everything but its input and result, which can be megabytes."""

    plugin = serializers.CharField(source="plugin_name")
    error = ErrorField(source="public_error", allow_null=True)
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="While PENDING for another attempt: when it may start."
    )
    requested_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who asked for it: a username, or null once that user is deleted.",
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "plugin",
            "plugin_version",
            "plugin_fingerprint",
            "requested_version",
            "status",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "elapsed_ms",
            "attempt",
            "max_attempts",
            "next_attempt_at",
            "progress",
        ]
        read_only_fields = fields


class JobSerializer(CallbackFieldMixin, ArtifactsMixin, JobSummarySerializer):
    """A whole job: its summary, input, result, artifacts and earlier attempts."""

    input = JSONObjectField(source="input_payload")
    result = JSONObjectField(allow_null=True, help_text="Set once the job is SUCCESS.")
    attempts = AttemptSerializer(many=True, help_text="Earlier attempts that ended unfinished.")

    class Meta(JobSummarySerializer.Meta):
        fields = [
            *JobSummarySerializer.Meta.fields,
            "input",
            "result",
            "attempts",
            "artifacts",
            "callback",
        ]
        read_only_fields = fields


class HealthSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    checks = serializers.DictField()
