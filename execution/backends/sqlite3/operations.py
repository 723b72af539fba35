"""Django's SQLite operations, with JSON written as UTF-8 text rather than ``\\u`` escapes.

SQLite keeps a JSONField as the text ``json.dumps`` made of it, and ``json.dumps``
escapes every non-ASCII character by default: six bytes (twelve for a character
outside the BMP) where UTF-8 needs two to four, so text in most of the world's
scripts took three times its size on disk. The text written here means the same
JSON (every reader, SQLite's own JSON functions included, decodes both alike), so
nothing read back, hashed or verified changes.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.sqlite3 import operations

from execution.backends.json_text import utf8_json


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_json_value(self, value: Any, encoder: type[json.JSONEncoder] | None) -> str:
        return utf8_json(value, encoder)
