"""Execution endpoints: thin views over AnalysisExecutionService and JobExecutionService."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connection
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.api.serializers import (
    ErrorResponseSerializer,
    ExecutionRequestSerializer,
    ExecutionResultSerializer,
    HealthSerializer,
    JobFilterSerializer,
    JobSerializer,
)
from execution.models import Job, JobStatus
from execution.services import (
    AnalysisExecutionService,
    JobAlreadyEnded,
    JobExecutionService,
    JobNotFound,
)
from plugins.errors.drf import error_response
from plugins.errors.error_envelope import ErrorType
from plugins.models import PluginState
from plugins.registry import get_registry


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description)


COMMON_ERRORS = {
    401: _error("AuthenticationFailed: no or invalid credentials"),
    403: _error("PermissionDenied"),
    405: _error("MethodNotAllowed"),
    406: _error("UnsupportedMediaType: the Accept header asks for something other than JSON"),
    429: _error("Throttled"),
    503: _error("ServiceUnavailable: the database (or another dependency) is down"),
}
REQUEST_ERRORS = {
    400: _error(
        "ValidationError, ParseError, PluginNotFound, PluginUnavailable, or an execution "
        "failure: PluginExecutionError, OutputValidationError, PluginTimeout, PluginCrashed, "
        "PluginResourceLimit, Cancelled"
    ),
    413: _error("PayloadTooLarge"),
    415: _error("UnsupportedMediaType: the body is not application/json"),
    **COMMON_ERRORS,
}


class JobConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The job has already ended."
    default_code = "conflict"


def _validated(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class AnalyzeExecutionView(APIView):
    """Run a plugin now and answer with its result or its error."""

    @extend_schema(
        request=ExecutionRequestSerializer,
        responses={200: ExecutionResultSerializer, **REQUEST_ERRORS},
        summary="Execute a plugin synchronously",
    )
    def post(self, request: Request) -> Response:
        data = _validated(ExecutionRequestSerializer, request.data)
        job = AnalysisExecutionService().execute(data["plugin"], data["payload"], request.user)
        headers = {"X-Job-Id": str(job.pk)}
        if job.status != JobStatus.SUCCESS:  # FAILED, or CANCELLED while it ran
            return Response(
                {"detail": job.public_error}, status=status.HTTP_400_BAD_REQUEST, headers=headers
            )
        return Response(ExecutionResultSerializer(job).data, headers=headers)


class JobPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Job]):
    """Background jobs: submit, list (your own; staff see all) and inspect."""

    serializer_class = JobSerializer
    pagination_class = JobPagination
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        jobs = Job.objects.visible_to(self.request.user).select_related("requested_by")
        if self.action == "list":
            filters = _validated(JobFilterSerializer, self.request.query_params.dict())
            if "status" in filters:
                jobs = jobs.filter(status=filters["status"])
            if "plugin" in filters:
                jobs = jobs.filter(plugin_name=filters["plugin"])
        return jobs

    def get_object(self) -> Job:
        try:
            return JobExecutionService().get_job(self.kwargs["pk"], user=self.request.user)
        except JobNotFound as exc:
            raise NotFound("No such job.") from exc

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=JobStatus.values, required=False),
            OpenApiParameter("plugin", str, required=False),
        ],
        responses={200: JobSerializer(many=True), 400: _error("ValidationError"), **COMMON_ERRORS},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: JobSerializer, 404: _error("NotFound"), **COMMON_ERRORS})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            404: _error("NotFound"),
            409: _error("Conflict: the job is already SUCCESS, FAILED or CANCELLED"),
            **COMMON_ERRORS,
        },
        summary="Cancel a pending or running job",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """A PENDING job never runs; a RUNNING one is stopped within about a second."""
        try:
            job = AnalysisExecutionService().cancel(pk, request.user)
        except JobNotFound as exc:
            raise NotFound("No such job.") from exc
        except JobAlreadyEnded as exc:
            raise JobConflict(str(exc)) from exc
        return Response(JobSerializer(job).data)

    @extend_schema(
        request=ExecutionRequestSerializer,
        responses={202: JobSerializer, **REQUEST_ERRORS},
        summary="Submit a plugin execution as a background job",
    )
    def create(self, request: Request) -> Response:
        data = _validated(ExecutionRequestSerializer, request.data)
        # An enqueue failure marks this same instance FAILED; nothing to re-read.
        job = AnalysisExecutionService().submit(data["plugin"], data["payload"], request.user)
        location = request.build_absolute_uri(reverse("job-detail", args=[job.pk]))
        return Response(
            JobSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )


class HealthView(APIView):
    """200 when the database answers and at least one plugin is available, else 503."""

    authentication_classes: list[type[Any]] = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: _error("ServiceUnavailable")})
    def get(self, request: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except DatabaseError as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        states = [entry.state for entry in get_registry().get_status()]
        checks["plugins"] = {
            "available": states.count(PluginState.AVAILABLE),
            "unavailable": states.count(PluginState.UNAVAILABLE),
        }
        if checks["database"] == "ok" and checks["plugins"]["available"]:
            return Response({"status": "ok", "checks": checks})
        return error_response(
            ErrorType.SERVICE_UNAVAILABLE,
            "The service is not healthy",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            details=checks,
        )
