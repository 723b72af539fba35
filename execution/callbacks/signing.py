"""The ``X-Signature`` of a callback: HMAC-SHA256 over ``<timestamp>.<body>``.

The header reads ``t=<unix seconds>,v1=<hex digest>``. The timestamp is signed with
the body, so a receiver that refuses old timestamps (say, more than five minutes
from its clock) refuses a replayed delivery; the digest proves the body came from
a holder of the key. docs/api.md shows a receiver's check.

The key is ``CALLBACK_SIGNING_KEY``, or by default one derived from SECRET_KEY
under a salt of its own (so it is no use for anything else Django signs).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from django.utils.crypto import salted_hmac

SIGNATURE_HEADER = "X-Signature"
VERSION = "v1"
KEY_SALT = "execution.callbacks.signing"
# What docs/api.md advises receivers to accept: a timestamp at most this far from now.
DEFAULT_TOLERANCE_S = 300


def signing_key() -> bytes:
    """The key callbacks are signed with (give it to the receivers)."""
    if settings.CALLBACK_SIGNING_KEY:
        return str(settings.CALLBACK_SIGNING_KEY).encode()
    return salted_hmac(KEY_SALT, "callback signing key", algorithm="sha256").hexdigest().encode()


def signature(body: bytes, timestamp: int, key: bytes | None = None) -> str:
    """The header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = _digest(key if key is not None else signing_key(), timestamp, body)
    return f"t={timestamp},{VERSION}={digest}"


def verify(
    body: bytes,
    header: str,
    key: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``key`` at a time within ``tolerance_s`` of now.

    What a receiver does (docs/api.md has the same check without this project).
    """
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(fields.get(VERSION, ""), _digest(key, timestamp, body))


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
