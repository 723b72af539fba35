"""A plugin's own bound on its input (``Plugin.max_input_bytes``), under the request's.

``API_MAX_REQUEST_BYTES`` bounds every request body before it is parsed; a plugin
that only handles small inputs says so with ``max_input_bytes``, and a larger
payload is refused before anything runs: on the synchronous path, for a
background job and for an admin's re-run alike (JobExecutionService checks it
where it creates every job).
"""

from __future__ import annotations

import json
from typing import Any

from api.errors import ProtocolErrorType
from plugins.errors.exceptions import GovernedExecutionError


class InputTooLarge(GovernedExecutionError):
    """The payload is larger than its plugin accepts; the API answers it with a 413."""

    error_type = ProtocolErrorType.PAYLOAD_TOO_LARGE


def input_size(payload: Any) -> int:
    """The payload's size in bytes: its compact JSON text, in UTF-8."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def check_input_size(*, plugin_name: str, payload: Any, max_input_bytes: int | None) -> None:
    """Raise InputTooLarge when ``payload`` exceeds ``max_input_bytes`` (None: no own bound)."""
    if max_input_bytes is None:
        return
    size = input_size(payload)
    if size > max_input_bytes:
        raise InputTooLarge(
            f"The payload is {size} bytes; plugin {plugin_name!r} accepts at most "
            f"{max_input_bytes} bytes.",
            details={"plugin": plugin_name, "max_input_bytes": max_input_bytes, "size": size},
            plugin=plugin_name,
        )
