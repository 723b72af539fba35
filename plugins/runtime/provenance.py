"""What code ran: a plugin's version and a fingerprint of its code, as its own process saw them.

The parent's registry knows what was installed when it started; a plugin's child
process may have imported another release since (an upgrade on disk, a child
started later). So the process that runs the plugin reports what it ran, and
that is what a job records.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from dataclasses import dataclass
from importlib import metadata

MAX_FINGERPRINT_CHARS = 200


@dataclass(frozen=True)
class RanCode:
    """A plugin's version and code fingerprint."""

    version: str
    fingerprint: str

    def to_json(self) -> bytes:
        return json.dumps({"version": self.version, "fingerprint": self.fingerprint}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RanCode | None:
        """The report of a child, or None when it is empty or not one (a child may lie)."""
        if not data:
            return None
        try:
            fields = json.loads(data)
            version, fingerprint = fields["version"], fields["fingerprint"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(version, str) or not isinstance(fingerprint, str):
            return None
        return cls(version[:100], fingerprint[:MAX_FINGERPRINT_CHARS])


def code_of(plugin_class: type) -> RanCode:
    """The version and fingerprint of ``plugin_class`` as imported in this process.

    The fingerprint is the SHA-256 of the module's source, after the name and
    version of the distribution that installed it when there is one: the hash
    changes with any edit, the distribution says which release it came from.
    """
    version = str(getattr(plugin_class, "version", ""))
    return RanCode(version, _fingerprint(plugin_class.__module__))


@functools.cache
def _fingerprint(module_name: str) -> str:
    parts = []
    distribution = _distribution_of(module_name)
    if distribution:
        parts.append(distribution)
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path:
        try:
            with open(path, "rb") as source:
                parts.append(f"sha256:{hashlib.file_digest(source, 'sha256').hexdigest()}")
        except OSError:
            pass
    return " ".join(parts)[:MAX_FINGERPRINT_CHARS] or "unknown"


def _distribution_of(module_name: str) -> str:
    top_level = module_name.split(".", 1)[0]
    names = _top_level_distributions().get(top_level, [])
    if len(names) != 1:
        return ""
    try:
        return f"{names[0]}=={metadata.version(names[0])}"
    except metadata.PackageNotFoundError:
        return ""


@functools.cache
def _top_level_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())
