"""Scanner configuration: ``[tool.governance_scanner]`` in pyproject.toml.

Keys follow ruff where they overlap (``include``, ``exclude``, ``extend-exclude``,
``select``, ``ignore``, ``per-file-ignores``); they are written with dashes, and
underscores are accepted. Module paths are relative to the folder of the
configuration file. Command-line options override the file. This module imports
nothing beyond the standard library: the command line starts without Django.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
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
    ".governance_scanner_cache",
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


@dataclass(frozen=True, order=True)
class RunnerEntry:
    """A governed entry: the function or method through which every plugin executes."""

    module: str  # a path relative to the configuration, "plugins/runtime/tool_runner.py"
    qualified_name: str  # "ToolRunner.run", or a plain function: "run_tool"

    @classmethod
    def parse(cls, text: str) -> RunnerEntry:
        module, separator, name = text.strip().rpartition(":")
        parts = name.split(".")
        if not separator or not module or not all(part.isidentifier() for part in parts):
            raise ConfigError(
                f"[tool.governance_scanner] tool-runner entry {text!r} must be "
                "'path/to/module.py:Class.method' or 'path/to/module.py:function'"
            )
        return cls(module, name)

    @property
    def owner(self) -> str:
        """The name callers use: the class of a method, else the function itself."""
        return self.qualified_name.split(".", 1)[0]

    def __str__(self) -> str:
        return f"{self.module}:{self.qualified_name}"


DEFAULT_RUNNER = (RunnerEntry("plugins/runtime/tool_runner.py", "ToolRunner.run"),)


@dataclass(frozen=True)
class ScannerConfig:
    root: Path
    source: Path | None = None
    include: tuple[str, ...] = ("*.py",)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    tool_runner: tuple[RunnerEntry, ...] = DEFAULT_RUNNER
    # Set by a tool-runner key; "tool-runner = []" is a project without a runner.
    tool_runner_configured: bool = False
    # The configuration file has a [tool.governance_scanner] table: the project asked
    # to be governed. Its runner must then exist (GOV002), and every scan indexes the
    # whole project, not only the paths it was given.
    opted_in: bool = False
    plugin_methods: tuple[str, ...] = ("run",)
    plugin_factories: tuple[str, ...] = ()
    plugin_base_classes: tuple[str, ...] = ("Plugin", "BasePlugin")
    metrics_calls: tuple[str, ...] = ("update_execution_metrics",)
    job_models: tuple[str, ...] = ("Job",)
    state_machine_modules: tuple[str, ...] = ("execution/models.py",)
    runner_callers: tuple[str, ...] = DEFAULT_RUNNER_CALLERS
    # Modules (files or folders) an entry hands the plugin call through, followed by
    # the runner contract; by default only the entry's own module is.
    runner_delegates: tuple[str, ...] = ()
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


def _string_list(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"[tool.governance_scanner] {key} must be a list of strings")
    return tuple(value)


def _names(key: str, value: object) -> tuple[str, ...]:
    names = _string_list(key, value)
    for name in names:
        if not all(part.isidentifier() or part.startswith("*") for part in name.split(".")):
            raise ConfigError(f"[tool.governance_scanner] {key}: {name!r} is not a name")
    return names


def _path(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[tool.governance_scanner] {key} must be a non-empty string")
    return value


def _one_or_more_paths(key: str, value: object) -> tuple[str, ...]:
    return (_path(key, value),) if isinstance(value, str) else _string_list(key, value)


def _runner(key: str, value: object) -> tuple[RunnerEntry, ...]:
    # An empty list is a project without a runner, by design.
    return tuple(RunnerEntry.parse(entry) for entry in _one_or_more_paths(key, value))


def _runner_module(key: str, value: object) -> tuple[RunnerEntry, ...]:
    return (RunnerEntry(_path(key, value), "ToolRunner.run"),)


def _table(key: str, value: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(f"[tool.governance_scanner] {key} must be a table")
    return {pattern: _string_list(f"{key}.{pattern}", codes) for pattern, codes in value.items()}


# Accepted keys, dashed: the attribute each sets and how its value is read.
_FIELDS: dict[str, tuple[str, Callable[[str, object], object]]] = {
    "include": ("include", _string_list),
    "exclude": ("exclude", _string_list),
    "extend-exclude": ("extend_exclude", _string_list),
    "tool-runner": ("tool_runner", _runner),
    "tool-runner-module": ("tool_runner", _runner_module),  # "<module>:ToolRunner.run"
    "plugin-methods": ("plugin_methods", _names),
    "plugin-factories": ("plugin_factories", _names),
    "plugin-base-classes": ("plugin_base_classes", _names),
    "metrics-calls": ("metrics_calls", _names),
    "job-models": ("job_models", _names),
    "state-machine-modules": ("state_machine_modules", _one_or_more_paths),
    "state-machine-module": ("state_machine_modules", _one_or_more_paths),
    "runner-callers": ("runner_callers", _string_list),
    "runner-delegates": ("runner_delegates", _string_list),
    "select": ("select", _string_list),
    "ignore": ("ignore", _string_list),
    "per-file-ignores": ("per_file_ignores", _table),
}


def parse_config(
    data: dict[str, Any], root: Path, source: Path | None, *, opted_in: bool = True
) -> ScannerConfig:
    """Build a ScannerConfig from the ``[tool.governance_scanner]`` table."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = _FIELDS.get(key.replace("_", "-"))
        if spec is None:
            raise ConfigError(
                f"[tool.governance_scanner] has an unknown key {key!r}; known keys: "
                + ", ".join(sorted(_FIELDS))
            )
        attribute, read = spec
        if attribute in values:
            raise ConfigError(f"[tool.governance_scanner] sets {attribute} twice (key {key!r})")
        values[attribute] = read(key, value)
    if "tool_runner" in values:
        values["tool_runner_configured"] = True
    return ScannerConfig(root=root, source=source, opted_in=opted_in, **values)


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
    tools = data.get("tool", {})
    table = tools.get("governance_scanner", {}) if isinstance(tools, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.governance_scanner] must be a table")
    return parse_config(
        table,
        path.parent.resolve(),
        path.resolve(),
        opted_in=isinstance(tools, dict) and "governance_scanner" in tools,
    )
