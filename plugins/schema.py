"""drf-spectacular hooks."""

from __future__ import annotations

from typing import Any


def document_paths_without_trailing_slash(endpoints: list[Any], **kwargs: Any) -> list[Any]:
    """Routes accept an optional trailing slash ("/?"); document the canonical form without it."""
    return [
        (path.rstrip("/") if path_regex.endswith("/?$") else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]
