"""``CELERY_BROKER_URL``, read with the care settings give ``DATABASE_URL``.

No Celery import: settings call this before anything else loads. A missing or
malformed URL stops the process at start with one line that says what to set,
rather than a worker that retries a broker it can never reach.
"""

from __future__ import annotations

import os
from urllib.parse import SplitResult, urlsplit

from django.core.exceptions import ImproperlyConfigured

# Kombu's transports a deployment of this project may name (docs/celery.md).
SOCKET_SCHEME = "redis+socket"
REDIS_SCHEMES = frozenset({"redis", "rediss", SOCKET_SCHEME})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
EXAMPLE = "redis://127.0.0.1:6379/0"


def broker_url_from_env(name: str = "CELERY_BROKER_URL") -> str:
    """The broker URL in ``name``; ImproperlyConfigured when it is missing or malformed."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"TASKS_BACKEND=celery needs {name} (the broker), e.g. {name}={EXAMPLE}"
        )
    return check_broker_url(value, name=name)


def check_broker_url(value: str, *, name: str = "CELERY_BROKER_URL") -> str:
    """``value`` if it is a usable Redis or AMQP URL; else ImproperlyConfigured saying why."""
    try:
        parts = urlsplit(value)
        port = parts.port  # parses it: a port that is not a number raises
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL ({exc}); e.g. {EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES | AMQP_SCHEMES:
        raise ImproperlyConfigured(
            f"{name}: unsupported scheme {parts.scheme or '(none)'!r}; expected "
            f"redis://, rediss://, redis+socket://, amqp:// or amqps:// (e.g. {EXAMPLE})"
        )
    if scheme in REDIS_SCHEMES:
        _check_redis(parts, name=name)
    elif not parts.hostname:
        raise ImproperlyConfigured(f"{name}: no host in {_without_password(value)!r}")
    if port is not None and not 0 < port < 65536:
        raise ImproperlyConfigured(f"{name}: port {port} is out of range")
    return value


def _check_redis(parts: SplitResult, *, name: str) -> None:
    if parts.scheme.lower() == SOCKET_SCHEME:
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(f"{name}: no socket path (redis+socket:///path/to.sock)")
        return
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name}: no host (e.g. {EXAMPLE})")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ImproperlyConfigured(
            f"{name}: the Redis database must be a number (redis://host:port/N), not {database!r}"
        )


def _without_password(value: str) -> str:
    parts = urlsplit(value)
    if parts.password:
        return value.replace(f":{parts.password}@", ":***@", 1)
    return value
