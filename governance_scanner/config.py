"""Scanner configuration: ``[tool.governance_scanner]`` in pyproject.toml.

Keys follow ruff where they overlap (``include``, ``exclude``, ``extend-exclude``,
``select``, ``ignore``, ``per-file-ignores``). Module paths are relative to the
folder of the configuration file. Command-line options override the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "__pycache__",
    "__pypackages__",
    "migrations",
    "node_modules",
    "build",
    "dist",
    "site-packages",
    "*.egg-info",
)
DEFAULT_RUNNER_CALLERS = (
    "execution/services/plugin_execution_service.py",
    "plugins",
    "tests",
)


class ConfigError(Exception):
    """The configuration cannot be used; the command exits with 2."""


@dataclass(frozen=True)
class ScannerConfig:
    root: Path
    source: Path | None = None
    include: tuple[str, ...] = ("*.py",)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    tool_runner_module: str = "plugins/runtime/tool_runner.py"
    plugin_base_classes: tuple[str, ...] = ("Plugin", "BasePlugin")
    state_machine_module: str = "execution/models.py"
    runner_callers: tuple[str, ...] = DEFAULT_RUNNER_CALLERS
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def excluded(self) -> tuple[str, ...]:
        return self.exclude + self.extend_exclude

    def path(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    def with_overrides(self, **overrides: Any) -> ScannerConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


# Accepted keys, dashed; "_" and "-" are interchangeable as in ruff.
_FIELDS: dict[str, tuple[str, str]] = {
    "include": ("include", "list"),
    "exclude": ("exclude", "list"),
    "extend-exclude": ("extend_exclude", "list"),
    "tool-runner-module": ("tool_runner_module", "path"),
    "plugin-base-classes": ("plugin_base_classes", "list"),
    "state-machine-module": ("state_machine_module", "path"),
    "runner-callers": ("runner_callers", "list"),
    "select": ("select", "list"),
    "ignore": ("ignore", "list"),
    "per-file-ignores": ("per_file_ignores", "table"),
}


def _string_list(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"[tool.governance_scanner] {key} must be a list of strings")
    return tuple(value)


def parse_config(data: dict[str, Any], root: Path, source: Path | None) -> ScannerConfig:
    """Build a ScannerConfig from the ``[tool.governance_scanner]`` table."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = _FIELDS.get(key.replace("_", "-"))
        if spec is None:
            raise ConfigError(
                f"[tool.governance_scanner] has an unknown key {key!r}; known keys: "
                + ", ".join(sorted(_FIELDS))
            )
        attribute, kind = spec
        if kind == "list":
            values[attribute] = _string_list(key, value)
        elif kind == "path":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"[tool.governance_scanner] {key} must be a non-empty string")
            values[attribute] = value
        else:
            if not isinstance(value, dict):
                raise ConfigError(f"[tool.governance_scanner] {key} must be a table")
            values[attribute] = {
                pattern: _string_list(f"{key}.{pattern}", codes) for pattern, codes in value.items()
            }
    return ScannerConfig(root=root, source=source, **values)


def find_config(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` that has our table."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if "governance_scanner" in data.get("tool", {}):
                return candidate
    return None


def load_config(path: Path | None, *, cwd: Path) -> ScannerConfig:
    """Read ``path`` (or find one from ``cwd``); no file means the defaults, rooted at ``cwd``."""
    if path is None:
        path = find_config(cwd)
        if path is None:
            return ScannerConfig(root=cwd)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"Configuration file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Configuration file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Configuration file {path} is not valid TOML: {exc}") from exc
    table = data.get("tool", {}).get("governance_scanner", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.governance_scanner] must be a table")
    return parse_config(table, path.parent.resolve(), path.resolve())
