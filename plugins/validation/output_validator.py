"""Validate what a plugin returned against its ``Output`` model before a client sees it."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from plugins.contract import Plugin
from plugins.errors.exceptions import OutputValidationError
from plugins.validation.input_validator import describe_validation_errors
from plugins.validation.json_values import first_unstorable_values


def validate_output(plugin: Plugin, output: Any, max_bytes: int | None = None) -> bytes:
    """Return the plugin's output as JSON, or raise OutputValidationError.

    A plugin may return an instance of its ``Output`` model or a dict that
    validates against it; anything else (``None``, another type, another model)
    is a broken plugin, not a client error. So is a result whose JSON is larger
    than ``max_bytes``: it would be stored on the job and sent to clients.
    """
    if isinstance(output, plugin.Output):
        model = output
    elif isinstance(output, dict):
        try:
            model = plugin.Output.model_validate(output)
        except pydantic.ValidationError as exc:
            raise OutputValidationError(
                f"Plugin {plugin.name!r} returned output that does not match its Output model",
                details=describe_validation_errors(exc),
            ) from exc
    else:
        kind = "None" if output is None else type(output).__name__
        raise OutputValidationError(
            f"Plugin {plugin.name!r} returned {kind}; expected {plugin.Output.__name__} or a dict",
            details={"returned_type": kind},
        )
    encoded = _as_json(model)
    if max_bytes is not None and len(encoded) > max_bytes:
        raise OutputValidationError(
            f"Plugin {plugin.name!r} returned a result of {len(encoded)} bytes; "
            f"the limit is {max_bytes}",
            details={"result_bytes": len(encoded), "max_result_bytes": max_bytes},
        )
    return encoded


def check_storable_output(result: Any) -> None:
    """Raise OutputValidationError if ``result`` holds text or numbers no database stores."""
    problems = first_unstorable_values(result)
    if problems:
        raise OutputValidationError(
            "The plugin returned a result that cannot be stored",
            details={
                "errors": [
                    {"location": list(location), "message": message, "type": "unstorable"}
                    for location, message in problems
                ]
            },
        )


def _as_json(model: BaseModel) -> bytes:
    try:
        return model.__pydantic_serializer__.to_json(model)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise OutputValidationError(
            "Plugin output cannot be serialised to JSON", details={"reason": str(exc)}
        ) from exc
