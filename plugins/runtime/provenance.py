"""What code ran: a plugin's version and a fingerprint of its code, as its own process saw them.

The server's registry knows what was installed when it started; a plugin's host
process may have imported another release since (an upgrade on disk, a host
started later). So the process that runs the plugin reports what it ran, and
that is what a job records.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

MAX_FINGERPRINT_CHARS = 200


@dataclass(frozen=True)
class RanCode:
    """A plugin's version and code fingerprint."""

    version: str
    fingerprint: str

    def as_report(self) -> dict[str, str]:
        return {"version": self.version, "fingerprint": self.fingerprint}

    @classmethod
    def from_report(cls, report: Any) -> RanCode | None:
        """What a host reported it ran, or None when it is not such a report (a host may lie)."""
        try:
            version, fingerprint = report["version"], report["fingerprint"]
        except (KeyError, TypeError):
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
