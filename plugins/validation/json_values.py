"""JSON values every database can store and every client can read back.

Python's json module accepts a lone surrogate (``"\\ud800"``), a number too big
for a double (``1e400`` becomes infinity) and ``\\u0000``. PostgreSQL refuses all
three; SQLite stores the first two, and then every read of the row fails. Input
with them is refused, output with them is a broken plugin, and error reports
(which must always be recorded) get them replaced.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

Location = tuple[str | int, ...]
MAX_REPORTED_PROBLEMS = 20


def first_unstorable_values(value: Any) -> list[tuple[Location, str]]:
    """The first few places where ``value`` holds something that cannot be stored."""
    return list(itertools.islice(unstorable_values(value), MAX_REPORTED_PROBLEMS))


def unstorable_values(value: Any, location: Location = ()) -> Iterator[tuple[Location, str]]:
    """Where ``value`` holds something that cannot be stored, and what it is."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield location, problem
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield location, "Numbers must be finite and fit in a double."
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key) if isinstance(key, str) else None
            if problem:
                yield (*location, storable_text(key)), problem
            else:
                yield from unstorable_values(item, (*location, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_values(item, (*location, index))


def storable_copy(value: Any) -> Any:
    """``value`` with bad text made readable and non-finite numbers as text."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable_copy(key): storable_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_copy(item) for item in value]
    return value


def storable_text(text: str) -> str:
    if _text_problem(text) is None:
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "Text may not contain the character U+0000."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Text may not contain a lone surrogate (an unpaired \\ud800-\\udfff escape)."
    return None
