"""Who may scrape ``/metrics``: a bearer token (``METRICS_TOKEN``) and/or client networks.

Both are optional and checked together: with a token set, a scrape without it is
refused (401); with ``METRICS_ALLOWED_NETWORKS`` set, a client outside them is
refused (403). The client is ``REMOTE_ADDR``: behind a proxy, the proxy's address,
so list the proxy's network there or let the proxy restrict the path.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.http import HttpRequest


class MetricsRefusalType(StrEnum):
    """The envelope types of a refused scrape: two of ``api.errors.ProtocolErrorType``'s.

    Spelled here because the plugins app sits below the project's ``api/`` layer.
    """

    AUTHENTICATION_FAILED = "AuthenticationFailed"
    PERMISSION_DENIED = "PermissionDenied"


@dataclass(frozen=True)
class MetricsRefusal:
    """Why a scrape is refused: the envelope's type, its message and the HTTP status."""

    error_type: MetricsRefusalType
    message: str
    status: int


def metrics_refusal(request: HttpRequest) -> MetricsRefusal | None:
    """``None`` when ``request`` may read ``/metrics``, else why not."""
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks and not _from_allowed_network(request.META.get("REMOTE_ADDR", ""), networks):
        return MetricsRefusal(
            MetricsRefusalType.PERMISSION_DENIED,
            "/metrics does not answer this client's network (METRICS_ALLOWED_NETWORKS)",
            403,
        )
    token = settings.METRICS_TOKEN
    if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
        return MetricsRefusal(
            MetricsRefusalType.AUTHENTICATION_FAILED,
            "/metrics needs the bearer token METRICS_TOKEN: Authorization: Bearer <token>",
            401,
        )
    return None


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, sent = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())


def _from_allowed_network(address: str, networks: list[str]) -> bool:
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(network, strict=False) for network in networks)
