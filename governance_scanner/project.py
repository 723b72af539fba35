"""What project rules see: the configuration, the scanned paths and parsed modules."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from governance_scanner.checker import FileOptions, SourceFile
from governance_scanner.config import ScannerConfig


def module_names(path: str) -> tuple[str, str]:
    """The dotted module and package of a file, following ``__init__.py`` upwards."""
    folder, name = os.path.split(path)
    package = _package_of_folder(folder)
    if name == "__init__.py":
        return package, package
    stem = name[:-3] if name.endswith(".py") else os.path.splitext(name)[0]
    return (f"{package}.{stem}" if package else stem), package


_packages: dict[str, str] = {}


def _package_of_folder(folder: str) -> str:
    if folder not in _packages:
        if not os.path.isfile(os.path.join(folder, "__init__.py")):
            _packages[folder] = ""
        else:
            parent = _package_of_folder(os.path.dirname(folder))
            name = os.path.basename(folder)
            _packages[folder] = f"{parent}.{name}" if parent else name
    return _packages[folder]


def display_path(path: Path, cwd: Path) -> str:
    """Relative to ``cwd`` when below it, with ``/`` separators."""
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


class Project:
    """One scan's view of the project, shared by the project rules."""

    def __init__(self, config: ScannerConfig, cwd: Path, paths: Sequence[Path]) -> None:
        self.config = config
        self.cwd = cwd
        self.paths = [path.resolve() for path in paths]
        self.options = FileOptions.from_config(config)
        self.memo: dict[str, Any] = {}  # analyses several rules share, computed once
        self._sources: dict[Path, SourceFile | None] = {}

    def covers(self, target: Path) -> bool:
        """Whether the scan includes ``target`` (or where it should be)."""
        return any(path == target or path in target.parents for path in self.paths)

    def display(self, path: Path) -> str:
        return display_path(path, self.cwd)

    def source(self, path: Path) -> SourceFile | None:
        """``path`` parsed; None if it cannot be read or parsed (the file scan reports that)."""
        if path not in self._sources:
            try:
                data = path.read_bytes()
                tree = ast.parse(data)
            except (OSError, SyntaxError, ValueError):
                self._sources[path] = None
            else:
                module, package = module_names(str(path))
                self._sources[path] = SourceFile(
                    tree=tree,
                    text=data.decode("utf-8", errors="replace"),
                    display_path=self.display(path),
                    module=module,
                    package=package,
                    is_tool_runner=True,
                    options=self.options,
                )
        return self._sources[path]
