"""The on-disk cache of per-file analyses, keyed by each file's content.

One JSON file per fingerprint (the scanner's own source, Python's version and the
options a file's analysis depends on) in ``.governance_scanner_cache/`` at the
project root, as ruff keeps ``.ruff_cache/``; files of other scanner versions are
removed when one is written. It maps a file's path to its content hash, its place
in the project (module, package, role) and what its analysis found; an entry is
used only while the hash and the place both match. Entries hold nothing decided
across files (whether a class is a plugin), so they stay valid when other files
change.

It is written atomically (a temporary file, then ``os.replace``): runs in parallel,
as pre-commit makes them, never read a torn file, and the last writer wins with a
complete one. A cache that cannot be read, parsed or written is ignored: it only
ever saves time. JSON, never pickle: loading a cache must not run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CACHE_DIR_NAME = ".governance_scanner_cache"
CACHE_DIR_ENV = "GOVERNANCE_SCANNER_CACHE_DIR"
FORMAT = 1
_PACKAGE = Path(__file__).resolve().parent


def content_digest(data: bytes) -> str:
    # SHA-256 runs in hardware on most machines: three times blake2b's speed here.
    return hashlib.sha256(data).hexdigest()


def scanner_fingerprint() -> str:
    """The scanner's own source (it stands for its version, so a changed rule invalidates
    the cache even without a release), Python's version and the cache format."""
    digest = hashlib.sha256(f"{FORMAT}\0{sys.version}".encode())
    for folder in (_PACKAGE, _PACKAGE / "rules"):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                digest.update(name.encode())
                digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def options_fingerprint(options: object) -> str:
    """The configuration a file's analysis depends on (its ``repr``)."""
    return hashlib.sha256(repr(options).encode()).hexdigest()[:16]


class ScanCache:
    """The entries of one scanner version and ``options``: ``get`` before analysing a
    file, ``put`` after."""

    def __init__(self, folder: Path, options: object) -> None:
        self.folder = folder
        self._scanner = scanner_fingerprint()
        self.file = folder / f"index-{self._scanner}-{options_fingerprint(options)}.json"
        self._entries: dict[str, list[Any]] = self._load()
        self._changed = False

    def _load(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.file.read_bytes())
        except (OSError, ValueError, RecursionError):  # missing, unreadable, torn, not JSON
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {}
        entries = data.get("files")
        return entries if isinstance(entries, dict) else {}

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def get(self, path: str, digest: str, place: str) -> list[Any] | None:
        """The stored analysis of ``path`` if it was made of this content at this place."""
        entry = self._entries.get(path)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [digest, place]:
            value = entry[2]
            return value if isinstance(value, list) else None
        return None

    def put(self, path: str, digest: str, place: str, value: list[Any]) -> None:
        self._entries[path] = [digest, place, value]
        self._changed = True

    def forget_missing(self, folders: Iterable[str], present: set[str]) -> None:
        """Drop entries of files under ``folders`` (walked whole this run) that were not found:
        deleted, or excluded since."""
        prefixes = tuple(folder.rstrip(os.sep) + os.sep for folder in folders)
        if not prefixes:
            return
        gone = [p for p in self._entries if p.startswith(prefixes) and p not in present]
        for path in gone:
            del self._entries[path]
        self._changed = self._changed or bool(gone)

    def save(self) -> None:
        """Write the entries if anything changed, atomically; a failure leaves the old file."""
        if not self._changed:
            return
        # Beside the target, so that os.replace stays within one file system. (Not
        # tempfile: it costs more start-up time than the whole of this module.)
        temporary = f"{self.file}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
        try:
            self._create_folder()
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            return
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"format": FORMAT, "files": self._entries}, stream, separators=(",", ":"))
            os.replace(temporary, self.file)
            self._changed = False
        except OSError:
            pass
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self._remove_other_versions()

    def _remove_other_versions(self) -> None:
        """Files another version of the scanner wrote: this one can never read them."""
        for other in self.folder.glob("index-*.json"):
            if not other.name.startswith(f"index-{self._scanner}-"):
                with contextlib.suppress(OSError):  # another run removed it first
                    other.unlink()

    def _create_folder(self) -> None:
        if self.folder.is_dir():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # As ruff does: never committed, and skipped by backup tools.
        (self.folder / ".gitignore").write_text("# Automatically created.\n*\n")
        (self.folder / "CACHEDIR.TAG").write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n"
            "# The governance scanner's cache; see https://bford.info/cachedir/\n"
        )


def cache_folder(root: Path, explicit: str | None) -> Path:
    """``--cache-dir``, else $GOVERNANCE_SCANNER_CACHE_DIR, else the project's dot-folder."""
    chosen = explicit or os.environ.get(CACHE_DIR_ENV)
    return Path(chosen).resolve() if chosen else root / CACHE_DIR_NAME
