"""Making, checking and revoking API tokens (the model: ``token_models.ApiToken``)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from django.utils import timezone

from execution.policy.token_models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PREFIX_LENGTH = 8
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class NewToken(NamedTuple):
    """A token just made: the record, and the bearer value (shown once, never stored)."""

    token: ApiToken
    key: str


def token_digest(key: str) -> str:
    """What the database keeps of a bearer value."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` or ``"45s"``, as a timedelta (ValueError else)."""
    match = _DURATION.match(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h, 90m, 2w or 45s.")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def create_token(*, user: User, expires_in: timedelta | None = None) -> NewToken:
    """Make a token for ``user``; ``expires_in`` None: it lasts until revoked."""
    key = secrets.token_hex(20)
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    token = ApiToken.objects.create(
        digest=token_digest(key), prefix=key[:PREFIX_LENGTH], user=user, expires_at=expires_at
    )
    return NewToken(token=token, key=key)


def revoke_tokens(*, user: User) -> int:
    """Revoke every live token of ``user`` (one UPDATE); returns how many were revoked."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def refusal(token: ApiToken, now: datetime) -> str | None:
    """Why ``token`` no longer authenticates, or None while it does."""
    if token.revoked_at is not None:
        return "Token revoked."
    if token.expires_at is not None and token.expires_at <= now:
        return "Token expired."
    return None
