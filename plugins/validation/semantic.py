"""Semantic refusals: input its published schema accepts that a plugin still refuses.

JSON Schema states types, lengths, patterns and formats; it cannot state that bytes
decode as an image or that a checksum adds up. A validator of a plugin's ``Input``
that checks such a thing raises ``semantic_error(...)``; the refusal's entry in
``details.errors`` then carries ``"semantic": true``. A client (and the fuzzer) can
so tell "the schema refuses this" from "the schema allows it, yet it is wrong".
"""

from __future__ import annotations

from typing import Any

from pydantic_core import ErrorDetails, PydanticCustomError

SEMANTIC = "semantic"
"""The context key that marks a pydantic error as semantic (and the entry's field)."""


def semantic_error(error_type: str, message: str, **context: Any) -> PydanticCustomError:
    """An error to raise in a pydantic validator for a check JSON Schema cannot state.

    ``error_type`` is the entry's machine-readable ``type`` (e.g. ``image_undecodable``);
    ``message`` is a pydantic message template: ``{name}`` is filled from ``context``.
    """
    return PydanticCustomError(error_type, message, {**context, SEMANTIC: True})


def is_semantic(error: ErrorDetails) -> bool:
    """Whether pydantic's ``error`` was raised through ``semantic_error``."""
    return error.get("ctx", {}).get(SEMANTIC) is True


class SemanticCode(str):
    """A DRF ``ValidationError`` code whose entry says ``"semantic": true``.

    For a serializer's own checks the schema cannot state (a host the server's
    configuration refuses, say): ``ValidationError(message, code=SemanticCode("..."))``.
    api/exceptions.py's ``validation_errors`` marks the entry; DRF keeps the code as given.
    """
