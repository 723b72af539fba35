"""Validate a payload against a plugin's ``Input`` model before the plugin sees it."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from pydantic import BaseModel

from plugins.contract import Plugin
from plugins.errors.exceptions import InputValidationError
from plugins.validation.semantic import SEMANTIC, is_semantic


def describe_validation_errors(exc: pydantic.ValidationError) -> dict[str, Any]:
    """pydantic's errors as envelope details: ``{"errors": [{location, message, type}]}``.

    An entry raised through ``semantic_error`` also says ``"semantic": true``. The
    offending input and pydantic's context are left out on purpose: they may be
    large or sensitive.
    """
    errors = exc.errors(include_url=False, include_input=False)
    return {
        "errors": [
            {
                "location": list(error["loc"]),
                "message": error["msg"],
                "type": error["type"],
                **({SEMANTIC: True} if is_semantic(error) else {}),
            }
            for error in errors
        ]
    }


def _whole_numbers_as_integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers_as_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers_as_integers(item) for item in value]
    return value


def validate_input(plugin: Plugin, payload: Any) -> BaseModel:
    """Return ``payload`` as the plugin's ``Input`` model or raise InputValidationError.

    Validated as the JSON it is, in pydantic's strict mode: what the Input's JSON
    Schema (published in the API's schema) accepts, and nothing else, so ``"3"`` or
    ``true`` is not an integer. JSON's own spellings (an ISO date as a string) still
    are, and so is ``3.0``: JSON has one kind of number, and JSON Schema calls any
    number with no fraction an integer.
    """
    try:
        document = json.dumps(_whole_numbers_as_integers(payload), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputValidationError(
            f"Input for plugin {plugin.name!r} is not JSON data: {exc}", plugin=plugin.name
        ) from exc
    try:
        return plugin.Input.model_validate_json(document, strict=True)
    except pydantic.ValidationError as exc:
        raise InputValidationError(
            f"Input for plugin {plugin.name!r} is invalid",
            details=describe_validation_errors(exc),
            plugin=plugin.name,
        ) from exc
