"""Execution endpoints: thin views over AnalysisExecutionService and the job selectors."""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import FileResponse
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from api.exceptions import Conflict, ServiceUnavailable, exception_type
from api.parsers import UnstorableValues
from api.responses import envelope_response
from execution.api.filters import JobFilter, JobPagination
from execution.api.idempotency import (
    IDEMPOTENCY_CONFLICTS,
    IDEMPOTENCY_KEY_HEADER,
    answer_once,
    idempotency_key,
    replayed_header,
)
from execution.api.negotiation import AnyAccepted
from execution.api.serializers import (
    ExecutionRequestSerializer,
    ExecutionResultSerializer,
    HealthSerializer,
    JobRequestSerializer,
    JobSerializer,
    JobSummarySerializer,
)
from execution.artifacts.models import JobArtifact
from execution.artifacts.services import get_artifact, open_artifact
from execution.health import database_status, workers_status
from execution.models import Job, JobQuerySet, JobStatus
from execution.policy.throttling import CANCEL, EXECUTION, ExecutionRateThrottle
from execution.selectors import get_job, job_summaries
from execution.services import (
    AnalysisExecutionService,
    CancelNotAllowed,
    JobAlreadyEnded,
    JobNotFound,
    OutcomeNotRecorded,
)
from execution.services.analysis_execution_service import record_refusal
from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.models import PluginState
from plugins.registry import get_registry
from plugins.runtime.isolation.process import SandboxSettings

logger = logging.getLogger(__name__)

EXECUTION_FAILURES = (
    "ValidationError, ParseError, PluginNotFound or PluginUnavailable: the request was "
    "refused and nothing was recorded. PluginExecutionError, OutputValidationError, "
    "PluginTimeout, PluginCrashed, PluginResourceLimit, PluginVersionMismatch or Cancelled: "
    "the job ran (or, for PluginVersionMismatch, was refused by the installed version) and "
    "failed (its id is in X-Job-Id)."
)
NOT_GRANTED = "PermissionDenied: you hold no grant of the plugin (PLUGIN_ACCESS=restricted)."
OVER_QUOTA = (
    "QuotaExceeded: the run would go past one of your quotas (details: quota, limit, "
    "used, resets_at); nothing was recorded. Or Throttled: your burst or sustained rate "
    "of these requests is used up, or too many failed authentications came from this "
    "address (details: scope, limit). Retry after Retry-After seconds."
)
OUTCOME_PENDING = (
    "ServiceUnavailable: the database is unavailable. When X-Job-Id is set, the plugin ran "
    "but its outcome is not recorded yet: read the job at Location after Retry-After. "
    "Or the plugin runs at most max_concurrency at once and all are busy (details.reason "
    "max_concurrency): nothing ran; try again after Retry-After, or submit a job."
)
JOB_ID_HEADER = OpenApiParameter(
    "X-Job-Id",
    OpenApiTypes.UUID,
    location=OpenApiParameter.HEADER,
    response=[200, 400, 503],
    description="The job recorded for this execution (absent if the request was refused).",
)


ANALYZE_ENDPOINT = "POST /v1/analyze-execution"
JOBS_ENDPOINT = "POST /v1/jobs"
# A synchronous run's answer is its ended job; a duplicate before then gets a 409.
FINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED})


def _response_header(name: str, kind: OpenApiTypes, description: str) -> OpenApiParameter:
    """A header of the 202 answer to a submitted job."""
    return OpenApiParameter(
        name,
        kind,
        location=OpenApiParameter.HEADER,
        response=[202],
        required=True,
        description=description,
    )


def _user(request: Request) -> User:
    """The authenticated user (every execution endpoint requires one)."""
    return cast(User, request.user)


def execution_request(
    request: Request, shape: type[ExecutionRequestSerializer] = ExecutionRequestSerializer
) -> dict[str, Any]:
    """The validated ``{"plugin", "payload"}`` body; a refused one is counted, then raised."""
    body: Any = None
    try:
        body = request.data
        serializer = shape(data=body)
        serializer.is_valid(raise_exception=True)
    except (APIException, RequestDataTooBig) as exc:
        body = exc.parsed if isinstance(exc, UnstorableValues) else body
        plugin_name = body.get("plugin") if isinstance(body, dict) else None
        record_refusal(plugin_name=plugin_name, error_type=exception_type(exc), user=_user(request))
        raise
    return dict(serializer.validated_data)


class AnalyzeExecutionView(APIView):
    """Run a plugin now and answer with its result or its error."""

    throttle_classes = [ExecutionRateThrottle]
    throttle_scope = EXECUTION

    @extend_schema(
        request=ExecutionRequestSerializer,
        responses={
            200: ExecutionResultSerializer,
            400: OpenApiResponse(description=EXECUTION_FAILURES),
            403: OpenApiResponse(description=NOT_GRANTED),
            429: OpenApiResponse(description=OVER_QUOTA),
            409: IDEMPOTENCY_CONFLICTS,
            503: OpenApiResponse(description=OUTCOME_PENDING),
        },
        parameters=[IDEMPOTENCY_KEY_HEADER, JOB_ID_HEADER, replayed_header([200, 400])],
        summary="Execute a plugin synchronously",
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key(request)
        data = execution_request(request)
        if key is None:
            return self._execute(request, data)
        return answer_once(
            request,
            key,
            data,
            endpoint=ANALYZE_ENDPOINT,
            run=lambda job_id: self._execute(request, data, job_id=job_id),
            replay=lambda job: _outcome(request, job) if job.status in FINAL else None,
        )

    def _execute(
        self, request: Request, data: dict[str, Any], job_id: uuid.UUID | None = None
    ) -> Response:
        try:
            done = AnalysisExecutionService().execute(
                plugin_name=data["plugin"],
                payload=data["payload"],
                user=_user(request),
                plugin_version=data.get("plugin_version", ""),
                job_id=job_id,
            )
        except OutcomeNotRecorded as exc:
            return _outcome_pending(request, exc.job)
        return _outcome(request, done)


def _outcome(request: Request, job: Job) -> Response:
    """What a synchronous execution answers with its ended job."""
    headers = {"X-Job-Id": str(job.pk)}
    if job.status == JobStatus.SUCCESS:
        body = ExecutionResultSerializer(job, context={"request": request}).data
        return Response(body, headers=headers)
    if job.public_error is None:  # not final: the row says something else happened
        return _outcome_pending(request, job)
    envelope = cast(ErrorEnvelope, job.error)  # FAILED, or CANCELLED while it ran
    return envelope_response(envelope, status.HTTP_400_BAD_REQUEST, headers=headers)


def _outcome_pending(request: Request, job: Job) -> Response:
    """503 for a job that ran but whose outcome is not recorded yet: read it later."""
    location = request.build_absolute_uri(reverse("job-detail", args=[job.pk]))
    envelope = build_error_envelope(
        ErrorType.SERVICE_UNAVAILABLE,
        "The plugin ran, but the database did not take its outcome yet; it is written as "
        f"soon as the database takes writes again. Read the job at {location}.",
        details={"job_id": str(job.pk)},
        plugin=job.plugin_name,
    )
    return envelope_response(
        envelope,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={
            "X-Job-Id": str(job.pk),
            "Location": location,
            "Retry-After": str(settings.JOB_POLL_AFTER_S * 5),
        },
    )


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Job]):
    """Background jobs: submit, list (your own, or all: see jobs_visible_to) and inspect."""

    serializer_class = JobSerializer
    pagination_class = JobPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = JobFilter
    throttle_classes = [ExecutionRateThrottle]

    @property
    def throttle_scope(self) -> str | None:
        """Submitting shares the user's execution rates; cancelling has its own; reads have none."""
        return {"create": EXECUTION, "cancel": CANCEL}.get(self.action or "")

    def get_throttles(self) -> list[BaseThrottle]:
        return super().get_throttles() if self.throttle_scope else []

    def get_queryset(self) -> JobQuerySet:
        return job_summaries(user=self.request.user)

    def get_serializer_class(self) -> type[BaseSerializer[Job]]:
        return JobSummarySerializer if self.action == "list" else JobSerializer

    def get_object(self) -> Job:
        try:
            return get_job(self.kwargs["pk"], user=self.request.user)
        except JobNotFound as exc:
            raise NotFound("No such job.") from exc

    @extend_schema(summary="List jobs (summaries: no input or result)")
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="A job, with its input and result")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: OpenApiResponse(description="Conflict: the job already ended."),
        },
        summary="Cancel a pending or running job",
        description="Your own jobs; anyone's with the `execution.change_job` permission.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """A PENDING job never runs; a RUNNING one is stopped within about a second."""
        try:
            job = AnalysisExecutionService().cancel(job_id=pk, user=_user(request))
        except JobNotFound as exc:
            raise NotFound("No such job.") from exc
        except CancelNotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        except JobAlreadyEnded as exc:
            raise Conflict(str(exc)) from exc
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(
        request=None,
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The file, with the artifact's Content-Type and Content-Length, "
                "as an attachment named after it.",
            ),
            404: OpenApiResponse(
                description="NotFound: no such job (or not yours), or no such artifact of it."
            ),
        },
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="The artifact's name.")
        ],
        summary="Download one of a job's artifacts",
        description="Whoever may read the job may download its artifacts.",
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"artifacts/(?P<name>[^/]+)",
        url_name="artifact",
        content_negotiation_class=AnyAccepted,
    )
    def artifact(self, request: Request, pk: str, name: str) -> FileResponse:
        job = self.get_object()
        try:
            artifact = get_artifact(job, name)
        except JobArtifact.DoesNotExist:
            raise NotFound("No such artifact.") from None
        try:
            file = open_artifact(artifact)
        except OSError:
            logger.exception("The file of artifact %s of job %s cannot be opened", name, pk)
            raise ServiceUnavailable(
                "The artifact's file cannot be read; try again later."
            ) from None
        response = FileResponse(
            file,
            as_attachment=True,
            filename=artifact.name,
            content_type=artifact.content_type,
        )
        response["Content-Length"] = str(artifact.size)
        return response

    @extend_schema(
        request=JobRequestSerializer,
        responses={
            202: JobSerializer,
            403: OpenApiResponse(description=NOT_GRANTED),
            429: OpenApiResponse(description=OVER_QUOTA),
            409: IDEMPOTENCY_CONFLICTS,
        },
        parameters=[
            IDEMPOTENCY_KEY_HEADER,
            replayed_header([202]),
            _response_header("Location", OpenApiTypes.URI, "Where to read the job."),
            _response_header(
                "Retry-After",
                OpenApiTypes.INT,
                "Seconds to wait before reading the job at Location.",
            ),
        ],
        summary="Submit a plugin execution as a background job",
    )
    def create(self, request: Request) -> Response:
        key = idempotency_key(request)
        data = execution_request(request, JobRequestSerializer)
        if key is None:
            return self._submit(request, data)
        return answer_once(
            request,
            key,
            data,
            endpoint=JOBS_ENDPOINT,
            run=lambda job_id: self._submit(request, data, job_id=job_id),
            replay=lambda job: _accepted(request, job),
        )

    def _submit(
        self, request: Request, data: dict[str, Any], job_id: uuid.UUID | None = None
    ) -> Response:
        # An enqueue failure marks this same instance FAILED; nothing to re-read.
        submitted = AnalysisExecutionService().submit(
            plugin_name=data["plugin"],
            payload=data["payload"],
            user=_user(request),
            plugin_version=data.get("plugin_version", ""),
            job_id=job_id,
            callback_url=data.get("callback_url", ""),
        )
        return _accepted(request, submitted)


def _accepted(request: Request, job: Job) -> Response:
    """202 with the job (as it is now, for a replay) and where to read it."""
    headers = {
        "Location": request.build_absolute_uri(reverse("job-detail", args=[job.pk])),
        "Retry-After": str(settings.JOB_POLL_AFTER_S),
    }
    body = JobSerializer(job, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


class HealthView(APIView):
    """200 when the database takes writes, at least one plugin is available and waiting
    jobs have a live worker; else 503, with the failing check in the envelope's details.

    Anyone may ask, with no credentials (a probe must never get a 401); staff who send
    theirs also see which confinement plugins run under.
    """

    authentication_classes: list[type[Any]] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer})
    def get(self, request: Request) -> Response:
        checks: dict[str, Any] = {"database": database_status()}
        checks["workers"] = workers_status() if checks["database"] == "ok" else "unknown"
        if _sent_by_staff(request):
            checks["sandbox"] = SandboxSettings.from_settings().describe()
        states = [entry.state for entry in get_registry().get_status()]
        checks["plugins"] = {
            "available": states.count(PluginState.AVAILABLE),
            "unavailable": states.count(PluginState.UNAVAILABLE),
        }
        healthy = checks["database"] == "ok" and checks["workers"] == "ok"
        if healthy and checks["plugins"]["available"]:
            return Response({"status": "ok", "checks": checks})
        envelope = build_error_envelope(
            ErrorType.SERVICE_UNAVAILABLE, "The service is not healthy", details=checks
        )
        return envelope_response(envelope, status.HTTP_503_SERVICE_UNAVAILABLE)


def _sent_by_staff(request: Request) -> bool:
    """Whether credentials the request carries are a staff user's; bad ones are no one's."""
    # The setting's strings, imported by DRF: classes.
    for authentication in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        try:
            found = authentication().authenticate(request)  # type: ignore[operator]
        except APIException:
            return False
        if found is not None:
            return bool(getattr(found[0], "is_staff", False))
    return False
