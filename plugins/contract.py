"""The plugin contract.

A plugin is a subclass of :class:`Plugin` with a unique ``name``, a ``version``,
a ``description``, pydantic ``Input`` and ``Output`` models and a ``run`` method.
The base class wraps every ``run`` a subclass defines with the runtime guard, so
calling it anywhere but inside ``ToolRunner.run`` raises
``UngovernedExecutionError``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeGuard

from pydantic import BaseModel

from plugins.artifacts import DEFAULT_MAX_ARTIFACT_BYTES
from plugins.errors.exceptions import PluginContractError
from plugins.runtime.guard import ensure_governed
from plugins.runtime.limits import IsolationKind

PLUGIN_NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
MAX_PLUGIN_NAME_LENGTH = 100
ISOLATION_MODES = tuple(mode.value for mode in IsolationKind)


def plugin_label(name: object) -> str:
    """A requested plugin name as errors and logs show it: text, cut to the longest name.

    Names come from clients, so they can be anything; no registered one is cut.
    """
    text = name if isinstance(name, str) else repr(name)
    return text[:MAX_PLUGIN_NAME_LENGTH]


def _govern(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def governed_run(self: Plugin, payload: Any) -> Any:
        ensure_governed(self)
        return run(self, payload)

    governed_run.__governed__ = True  # type: ignore[attr-defined]
    return governed_run


class Plugin:
    """Base class of every plugin.

    Subclasses set the class attributes below and implement ``run``; it receives
    a validated ``Input`` instance and returns an ``Output`` instance or a dict
    that validates against ``Output``.

    The optional attributes override the project's defaults for this plugin:
    ``isolation`` (``"process"`` or ``"thread"``, default ``PLUGIN_ISOLATION``),
    ``timeout_s`` (``PLUGIN_DEFAULT_TIMEOUT_S``), ``max_memory_mb``
    (``PLUGIN_DEFAULT_MAX_MEMORY_MB``) and ``max_attempts`` (1: a background job
    whose worker is lost fails; more: it is tried again).

    ``max_input_bytes``: the largest payload it accepts, measured as compact JSON
    in UTF-8; a larger one is refused (PayloadTooLarge) before anything runs.
    None: only the request's bound, ``API_MAX_REQUEST_BYTES``.
    ``max_artifact_bytes``: the largest file ``run`` may return with its output
    (``WithArtifacts``, plugins/artifacts.py); default 50 MB.
    ``max_concurrency`` caps how many of its executions run at once across the
    whole fleet, every worker and web process together (``1`` for a plugin that
    needs the one GPU; None: no cap). A background job waits in the queue for a
    free slot; a synchronous request finding none is refused (503, Retry-After).

    What its sandbox lets it do (process isolation): ``network`` (TCP, only if the
    operator also names it in ``PLUGIN_NETWORK_ALLOWED``), ``read_paths`` (absolute
    paths it may read besides the interpreter and the installed packages) and
    ``fresh_process`` (a new process for every execution, at the cost of its start).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    isolation: ClassVar[str | None] = None
    timeout_s: ClassVar[float | None] = None
    max_memory_mb: ClassVar[int | None] = None
    max_attempts: ClassVar[int] = 1
    max_input_bytes: ClassVar[int | None] = None
    max_artifact_bytes: ClassVar[int] = DEFAULT_MAX_ARTIFACT_BYTES
    max_concurrency: ClassVar[int | None] = None
    network: ClassVar[bool] = False
    fresh_process: ClassVar[bool] = False
    read_paths: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if callable(run) and not getattr(run, "__governed__", False):
            cls.run = _govern(run)  # type: ignore[method-assign]

    def run(self, payload: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')}>"


def _defines_run(cls: type[Plugin]) -> bool:
    return any("run" in klass.__dict__ for klass in cls.__mro__ if klass is not Plugin)


def _is_model(value: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(value, type) and issubclass(value, BaseModel)


def contract_problems(cls: object) -> list[str]:
    """Every way ``cls`` breaks the plugin contract; empty when it is a valid plugin."""
    if not isinstance(cls, type) or not issubclass(cls, Plugin):
        return [f"{cls!r} is not a subclass of plugins.contract.Plugin"]
    problems: list[str] = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str):
        problems.append("'name' must be a string class attribute")
    elif not PLUGIN_NAME_PATTERN.fullmatch(name) or len(name) > MAX_PLUGIN_NAME_LENGTH:
        problems.append(
            f"'name' {name!r} must match [a-z0-9_]+ and be at most "
            f"{MAX_PLUGIN_NAME_LENGTH} characters"
        )
    version = getattr(cls, "version", None)
    if not isinstance(version, str) or not version.strip():
        problems.append("'version' must be a non-empty string")
    if not isinstance(getattr(cls, "description", None), str):
        problems.append("'description' must be a string")
    for attribute in ("Input", "Output"):
        model = getattr(cls, attribute, None)
        if not _is_model(model):
            problems.append(f"'{attribute}' must be a pydantic BaseModel subclass")
            continue
        try:  # the API publishes it: a model without one cannot be offered to clients
            model.model_json_schema(mode="serialization" if attribute == "Output" else "validation")
        except Exception as exc:
            problems.append(f"'{attribute}' has no JSON Schema: {type(exc).__name__}: {exc}")
    if not _defines_run(cls):
        problems.append("'run' must be overridden")
    timeout = getattr(cls, "timeout_s", None)
    if timeout is not None and not _is_positive(timeout, int | float):
        problems.append("'timeout_s' must be a positive number or None")
    memory = getattr(cls, "max_memory_mb", None)
    if memory is not None and not _is_positive(memory, int):
        problems.append("'max_memory_mb' must be a positive integer or None")
    input_bound = getattr(cls, "max_input_bytes", None)
    if input_bound is not None and not _is_positive(input_bound, int):
        problems.append("'max_input_bytes' must be a positive integer or None")
    if not _is_positive(getattr(cls, "max_artifact_bytes", None), int):
        problems.append("'max_artifact_bytes' must be a positive integer")
    if not _is_positive(getattr(cls, "max_attempts", None), int):
        problems.append("'max_attempts' must be a positive integer")
    concurrency = getattr(cls, "max_concurrency", None)
    if concurrency is not None and not _is_positive(concurrency, int):
        problems.append("'max_concurrency' must be a positive integer or None")
    isolation = getattr(cls, "isolation", None)
    if isolation is not None and isolation not in ISOLATION_MODES:
        problems.append(f"'isolation' must be one of {', '.join(ISOLATION_MODES)} or None")
    for flag in ("network", "fresh_process"):
        if not isinstance(getattr(cls, flag, None), bool):
            problems.append(f"'{flag}' must be True or False")
    paths = getattr(cls, "read_paths", None)
    if not isinstance(paths, tuple) or not all(
        isinstance(path, str) and path.startswith("/") for path in paths
    ):
        problems.append("'read_paths' must be a tuple of absolute paths")
    return problems


def _is_positive(value: object, kind: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, kind) and value > 0


def check_plugin_contract(cls: object) -> type[Plugin]:
    """Return ``cls`` if it is a valid plugin class, else raise PluginContractError."""
    problems = contract_problems(cls)
    if problems:
        label = getattr(cls, "__qualname__", repr(cls))
        raise PluginContractError(f"Plugin {label} is invalid: " + "; ".join(problems))
    assert isinstance(cls, type)
    assert issubclass(cls, Plugin)
    return cls
