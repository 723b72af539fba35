"""Validate what a plugin returned against its ``Output`` model before a client sees it."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from plugins.contract import Plugin
from plugins.errors.exceptions import OutputValidationError
from plugins.validation.input_validator import describe_validation_errors


def validate_output(plugin: Plugin, output: Any) -> dict[str, Any]:
    """Return the plugin's output as a JSON-safe dict or raise OutputValidationError.

    A plugin may return an instance of its ``Output`` model or a dict that
    validates against it; anything else (``None``, another type, another model)
    is a broken plugin, not a client error.
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
    return _as_json(model)


def _as_json(model: BaseModel) -> dict[str, Any]:
    try:
        return model.model_dump(mode="json")
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise OutputValidationError(
            "Plugin output cannot be serialised to JSON", details={"reason": str(exc)}
        ) from exc
