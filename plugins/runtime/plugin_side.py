"""What runs where a plugin is isolated: validation, the plugin's ``run``, output checks.

ToolRunner hands these functions to the plugin's isolation (plugins/runtime/isolation/),
which calls them with the plugin: in a sandboxed host process, they run there, so
the plugin's validators (plugin code too), ``run`` under the runtime guard and the
output's validation all run under its limits. They import nothing of Django: a
host loads only this, the contract and the plugin.
"""

from __future__ import annotations

from typing import Any

from plugins.artifacts import WithArtifacts, checked_artifacts
from plugins.contract import Plugin
from plugins.errors.exceptions import (
    GovernedExecutionError,
    PluginExecutionError,
    PluginVersionMismatchError,
)
from plugins.progress import ProgressError
from plugins.runtime.guard import authorised
from plugins.runtime.isolation.artifacts import with_artifacts
from plugins.validation.input_validator import validate_input
from plugins.validation.output_validator import validate_output


def check_version(plugin: Plugin, version: str) -> None:
    """Refuse to run anything but the version asked for (none asked: any)."""
    if version and version != plugin.version:
        raise PluginVersionMismatchError(
            f"Plugin {plugin.name!r} is at version {plugin.version!r}, not {version!r}",
            details={"requested": version, "installed": plugin.version},
        )


def _validate_version_and_input(plugin: Plugin, payload: Any, version: str) -> Any:
    validated = validate_input(plugin, payload)  # bad input is refused whatever the version
    check_version(plugin, version)
    return validated


def validate_and_run(
    plugin: Plugin,
    payload: Any,
    max_result_bytes: int,
    version: str,
    max_artifact_bytes: int | None = None,
    max_artifacts_total_bytes: int | None = None,
) -> bytes:
    """One execution where the plugin is isolated: validate, run, check the output.

    The result's JSON text; it carries the artifacts when ``run`` returned
    ``WithArtifacts`` (plugins/runtime/isolation/artifacts.py).
    """
    validated = _validate_version_and_input(plugin, payload, version)
    try:
        with authorised(plugin):
            output = plugin.run(validated)
    except GovernedExecutionError as exc:
        if type(exc) not in (PluginExecutionError, ProgressError):
            # Only ToolRunner says an input was refused, a limit hit or a process lost.
            raise PluginExecutionError(
                f"Plugin {plugin.name!r} failed with {type(exc).__name__}",
                details={"exception": type(exc).__name__},
            ) from exc
        raise
    if not isinstance(output, WithArtifacts):
        return validate_output(plugin, output, max_result_bytes)
    artifacts = checked_artifacts(
        f"Plugin {plugin.name!r}",
        output.artifacts,
        max_artifact_bytes or type(plugin).max_artifact_bytes,
        max_artifacts_total_bytes,
    )
    return with_artifacts(validate_output(plugin, output.output, max_result_bytes), artifacts)


def validate_only(plugin: Plugin, payload: Any, version: str) -> bytes:
    """Only check the version and validate a payload where the plugin is isolated.

    A background job's admission. Nothing comes back: the validated value is the
    plugin's making, and stays where it was made.
    """
    _validate_version_and_input(plugin, payload, version)
    return b""
