"""JSON text with its characters as they are, for databases that store JSON as text."""

from __future__ import annotations

import json
from typing import Any


def utf8_json(value: Any, encoder: type[json.JSONEncoder] | None = None) -> str:
    """``value`` as JSON text with its characters as they are (stored as UTF-8).

    A lone surrogate has no UTF-8 form, and the driver could not bind the text:
    such a value (the API refuses them in requests, but a plugin's error message
    may carry one) keeps json's ``\\u`` escapes.
    """
    text = json.dumps(value, cls=encoder, ensure_ascii=False)
    if text.isascii():  # constant time: CPython records it with the string
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, cls=encoder)
    return text
