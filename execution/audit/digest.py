"""Canonical JSON and the digests taken of it: of a job's input and result, and of entries.

Its own module because the job model (on every request) and the chain both use it,
and the chain needs the job model.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import math
from decimal import Decimal
from typing import Any


def canonical_json(value: Any) -> str:
    """``value`` as one canonical JSON text: what its digest is taken of.

    Sorted keys, no whitespace, text as is (not ``\\u`` escapes). A number is
    written from its value, so that it survives a round trip through SQLite's
    JSON and PostgreSQL's jsonb: jsonb returns ``1e20`` as the integer
    100000000000000000000 and ``1.0`` as 1.0, so every integral number is written
    as that integer, and other floats in their shortest round-trip form.
    """
    if _is_plain(value):
        return plain_json(value)
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def payload_sha256(value: Any) -> str:
    """SHA-256 of ``value``'s canonical JSON: how an input or a result is recorded."""
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()


# For values without floats, json's C encoder writes exactly the canonical form.
plain_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _is_plain(value: Any) -> bool:
    """No floats, no subclasses, only string keys: the C encoder's output is canonical."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is dict:
        return all(type(key) is str and _is_plain(item) for key, item in value.items())
    if kind is list:
        return all(_is_plain(item) for item in value)
    return False


def _encode(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        parts.append(str(int(value)))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, dict):
        items = sorted((_key(key), item) for key, item in value.items())
        parts.append("{")
        for index, (key, item) in enumerate(items):
            if index:
                parts.append(",")
            parts.append(_string(key))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes, in C


def _key(key: Any) -> str:
    """A mapping key as JSON writes it (json.dumps turns 1 into "1", True into "true")."""
    if isinstance(key, str):
        return key
    return canonical_json(key)


def _float(number: float) -> str:
    if not math.isfinite(number):
        return repr(number)  # no database stores these; the digest just must not fail
    if number.is_integer():
        return str(int(Decimal(repr(number))))
    return repr(number)
