"""The optional ``AUDIT_SIGNING_KEY``: held by the processes that seal and verify, only.

The key is read from the environment once, when Django starts (before any plugin
process exists), and removed from ``os.environ`` then: plugin processes come
from a forkserver that copies the environment of the process that starts it,
and set Django up from the settings module, so the key is neither in their
environment nor in their ``django.conf.settings`` (it never is a setting).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

SIGNING_KEY_ENV = "AUDIT_SIGNING_KEY"

_lock = threading.Lock()
_key: bytes | None = None


def take_signing_key_from_environment() -> None:
    """Move the key out of ``os.environ`` into this process's memory (idempotent)."""
    global _key
    with _lock:
        value = os.environ.pop(SIGNING_KEY_ENV, None)
        if value:
            _key = value.encode()


def signing_key() -> bytes | None:
    """The key this process seals and verifies with, or None."""
    if os.environ.get(SIGNING_KEY_ENV):
        take_signing_key_from_environment()  # set after start-up (a test, a shell)
    return _key


def set_signing_key(key: bytes | None) -> None:
    """Use ``key`` from now on in this process (tests, and tools that read it elsewhere)."""
    global _key
    with _lock:
        _key = key


def key_fingerprint(key: bytes | None) -> str:
    """A one-way name for ``key``, stored with the chain so a wrong key is told from tampering."""
    if key is None:
        return ""
    return hmac.new(key, b"governed-audit-key-fingerprint", hashlib.sha256).hexdigest()


def digest(key: bytes | None, message: bytes) -> str:
    """SHA-256 of ``message``, or its HMAC-SHA256 under ``key``."""
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
