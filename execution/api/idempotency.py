"""The HTTP side of idempotency keys: the header, its schema, and answering once per key.

The keys themselves (claims, replays, conflicts, expiry) are
execution/policy/idempotency.py; this module reads the header, turns conflicts
into 409s and says which answer a request with a key gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ProtocolErrorType
from api.responses import envelope_response
from execution.models import Job
from execution.policy import idempotency
from execution.policy.idempotency import KeyConflict, Replay
from execution.policy.idempotency_models import MAX_KEY_LENGTH
from execution.services.analysis_execution_service import record_refusal
from plugins.errors.error_envelope import build_error_envelope

REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    idempotency.HEADER,
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",  # printable ASCII (HTTP trims outer spaces)
    },
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key and body again, within IDEMPOTENCY_TTL_S, get the "
        "first request's job (its answer, with `Idempotent-Replayed: true`) and run nothing. "
        "Keys are per user: 1 to 255 printable ASCII characters (a UUID is a good one). "
        "Another body, or the other execution endpoint, with the same key: 409 Conflict "
        "(details.reason `other_body` or `other_endpoint`); a duplicate of a request that "
        "has no answer yet: 409 Conflict (`in_progress`, with Location and Retry-After). "
        "A bad key: 400 ValidationError."
    ),
)
IDEMPOTENCY_CONFLICTS = OpenApiResponse(
    description="Conflict: the Idempotency-Key was sent with another body or to the other "
    "endpoint, or its first request has no answer yet (details.reason says which)."
)


def replayed_header(statuses: list[int]) -> OpenApiParameter:
    """The response header that marks an earlier request's answer, for the schema."""
    return OpenApiParameter(
        REPLAYED_HEADER,
        OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        response=statuses,
        description="`true` when this is the answer of an earlier request with the same "
        "Idempotency-Key (nothing ran for this one).",
    )


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, if it sent one; a bad one is counted, then refused.

    Read from ``META`` directly: a request without the header pays one dict lookup.
    """
    raw = request.META.get(idempotency.META_KEY)
    if raw is None:
        return None
    try:
        return idempotency.parse_key(raw)
    except idempotency.InvalidKey as exc:
        record_refusal(plugin_name=None, error_type="ValidationError", user=_user(request))
        detail = {"headers": {idempotency.HEADER: [ErrorDetail(str(exc), code="invalid")]}}
        raise ValidationError(detail) from exc


def answer_once(
    request: Request,
    key: str,
    data: dict[str, Any],
    *,
    endpoint: str,
    run: Callable[[uuid.UUID], Response],
    replay: Callable[[Job], Response | None],
) -> Response:
    """Answer a request that sent ``key``: run it, or answer again what its first request did.

    ``run(job_id)`` executes the request as the job ``job_id``; the claim is
    released if it raises (a refused request made no job). ``replay(job)`` is the
    answer to a duplicate, None while that job has no answer yet (then 409).
    """
    user = _user(request)
    try:
        claimed = idempotency.claim_key(user=user, key=key, endpoint=endpoint, body=data)
    except KeyConflict as exc:
        return _conflict(request, exc, plugin=data["plugin"])
    if isinstance(claimed, Replay):
        answer = replay(claimed.job) if claimed.job is not None else None
        if answer is None:
            conflict = idempotency.in_progress(claimed, endpoint=endpoint)
            return _conflict(request, conflict, plugin=data["plugin"])
        answer[REPLAYED_HEADER] = "true"
        return answer
    try:
        return run(claimed.job_id)
    except BaseException:
        claimed.release()  # unless its job was recorded: then a retry must find it
        raise


def _conflict(request: Request, conflict: KeyConflict, *, plugin: str) -> Response:
    """409: the key names another request, or one with no answer yet (then: read it later)."""
    record_refusal(plugin_name=plugin, error_type=ProtocolErrorType.CONFLICT, user=_user(request))
    envelope = build_error_envelope(
        ProtocolErrorType.CONFLICT, conflict.message, details=conflict.details, plugin=plugin
    )
    headers = {}
    if conflict.reason is idempotency.ConflictReason.IN_PROGRESS:
        headers = {
            "X-Job-Id": str(conflict.job_id),
            "Location": request.build_absolute_uri(reverse("job-detail", args=[conflict.job_id])),
            "Retry-After": str(settings.JOB_POLL_AFTER_S),
        }
    return envelope_response(envelope, status.HTTP_409_CONFLICT, headers=headers)


def _user(request: Request) -> User:
    return cast(User, request.user)
