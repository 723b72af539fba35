"""The API's JSON parser: refuses what no database can store, before anything is written.

The body's size is Django's to check (``DATA_UPLOAD_MAX_MEMORY_SIZE``, set from
``API_MAX_REQUEST_BYTES``); the exception handler answers it with a 413.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ErrorDetail, ParseError, ValidationError

from plugins.validation.json_values import Location, first_unstorable_values


class UnstorableValues(ValidationError):
    """JSON that parsed but holds values no database stores; ``parsed`` says what it was."""

    def __init__(self, detail: Any, *, parsed: Any) -> None:
        super().__init__(detail)
        self.parsed = parsed


# Far beyond any real payload; well below where pickling the payload for a plugin's
# process, or walking it, would exhaust Python's stack.
MAX_JSON_DEPTH = 100


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: no nesting past the stack, only values every database stores.

    A lone surrogate, ``\\u0000`` or a number past a double's range is refused here,
    at its location, before any row is written (see plugins/validation/json_values.py).
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:  # the json module's answer to absurd nesting
            raise ParseError("JSON parse error - nested too deeply") from exc
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        problems = first_unstorable_values(data)
        if problems:
            raise UnstorableValues(_nested(problems), parsed=data)
        return data


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays deeper than ``limit`` (without recursion)."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            item
            for node in level
            if isinstance(node, dict | list)
            for item in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return True


def _nested(problems: list[tuple[Location, str]]) -> Any:
    """Problems as DRF's nested error detail, so each is reported at its own location."""
    detail: dict[Any, Any] = {}
    for location, message in problems:
        if not location:  # the whole body is one bad value
            return [ErrorDetail(message, code="unstorable")]
        node = detail
        for key in location[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):  # two locations that print alike: keep the first
                break
        else:
            leaf = node.setdefault(location[-1], [])
            if isinstance(leaf, list):
                leaf.append(ErrorDetail(message, code="unstorable"))
    return detail
