"""GOV002-GOV004: the runner contract, checked once per scan for each governed entry.

An entry (``tool-runner``: a module and ``Class.method`` or ``function``) must
exist, be callable as ``(name, payload)`` and reach a plugin execution. Every
place in the entry from which a plugin executes (an execution site) must sit in
a ``try`` whose ``finally`` makes a metrics call on every path. A site is either
a plugin execution itself (``plugin.run(...)``) or a reference to a function
that reaches one, however indirectly: that is how a runner hands the plugin call
to a thread or a child process and still owns it. The functions followed are
those of the entry's module and, through its imports, those of the modules
configured as ``runner-delegates``: a runner may keep what its child process
runs in a module of its own, which calls back into the runner's module.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from governance_scanner.checker import PLUGIN, Checker, SourceFile, last_name
from governance_scanner.config import RunnerEntry
from governance_scanner.flow import exits_skipping
from governance_scanner.project import Project
from governance_scanner.rules.base import Finding, ProjectRule, finding_at

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_EXIT_WORDS = {
    "next": "the end of the block",
    "return": "a return",
    "raise": "a raise",
    "break": "a break",
    "continue": "a continue",
}


class ToolRunnerMissing(ProjectRule):
    """A governed entry is missing, cannot be called as ``(name, payload)`` or runs no plugin.

    Everything else relies on one choke point. If a configured ``tool-runner``
    module or its class, method or function does not exist, if the entry cannot
    be called as ``run(plugin_name, payload)``, or if it reaches no plugin
    execution at all (so its guarantees cover nothing), callers either break or
    bypass it. A project that opted in (a ``[tool.governance_scanner]`` table) must
    have its runner, configured or at the default path; one without a runner by
    design says so with ``tool-runner = []``. Without any configuration
    (``--no-config``, another tree) a runner is checked only where it exists.

    Bad::

        class ToolRunner:
            def run(self, plugin_name, payload, user):  # a third required argument
                ...

    Good::

        class ToolRunner:
            def run(self, plugin_name, payload, timeout_s=None):
                ...
    """

    code = "GOV002"
    name = "toolrunner-missing"
    message = "ToolRunner is missing or cannot be called as run(plugin_name, payload)"

    def check_project(self, project: Project) -> Iterator[Finding]:
        for contract in contracts(project):
            yield from contract.missing


class ToolRunnerNoFinally(ProjectRule):
    """A plugin execution in the governed entry is not inside a ``try`` with a ``finally``.

    Metrics are recorded in ``finally`` so that no execution, failed or timed
    out, goes uncounted. An execution outside such a ``try`` can leave without
    passing through it. An execution is a plugin call or a reference to a
    function that reaches one (a thread's or a child process's target), in the
    runner's module or in one of its ``runner-delegates``.

    Bad::

        def run(self, plugin_name, payload):
            output = plugin.run(validated)
            self._registry.update_execution_metrics(plugin_name, state, ms, False)

    Good::

        def run(self, plugin_name, payload):
            try:
                output = plugin.run(validated)
            finally:
                self._registry.update_execution_metrics(plugin_name, state, ms, error is not None)
    """

    code = "GOV003"
    name = "toolrunner-no-finally"
    message = "plugin call in ToolRunner.run is not inside a try with a finally"

    def check_project(self, project: Project) -> Iterator[Finding]:
        for contract in contracts(project):
            yield from contract.no_finally


class MetricsNotInFinally(ProjectRule):
    """No ``finally`` around the plugin execution makes a metrics call on every path.

    ``update_execution_metrics(...)`` (or another of ``metrics-calls``) must run
    whatever happened. Every path out of the ``finally`` is followed: a call
    under an ``if`` without an ``else``, after a ``return``, ``raise``,
    ``break`` or ``continue`` that can skip it, inside a loop that may not run,
    in a ``match`` case or an ``except`` handler some path avoids, can be
    skipped. A call first in its own ``try``/``except`` inside the ``finally``
    cannot.

    Bad::

        finally:
            if error is None:
                self._registry.update_execution_metrics(name, state, ms, False)

    Good::

        finally:
            try:
                self._registry.update_execution_metrics(name, state, ms, error is not None)
            except Exception:
                logger.exception("metrics failed")
    """

    code = "GOV004"
    name = "metrics-not-in-finally"
    message = "no finally around the plugin call records update_execution_metrics() on every path"

    def check_project(self, project: Project) -> Iterator[Finding]:
        for contract in contracts(project):
            yield from contract.metrics_skipped


@dataclass
class Contract:
    """What one entry breaks, by rule."""

    missing: list[Finding] = field(default_factory=list)
    no_finally: list[Finding] = field(default_factory=list)
    metrics_skipped: list[Finding] = field(default_factory=list)


def contracts(project: Project) -> list[Contract]:
    """Every configured entry's contract, analysed once per scan."""
    key = "runner-contracts"
    if key not in project.memo:
        project.memo[key] = [
            _check_entry(project, entry) for entry in sorted(set(project.config.tool_runner))
        ]
    found: list[Contract] = project.memo[key]
    return found


def _check_entry(project: Project, entry: RunnerEntry) -> Contract:
    contract = Contract()
    path = project.config.path(entry.module)
    if not project.covers(path):
        return contract
    if not path.is_file():
        config = project.config
        if config.tool_runner_configured or config.opted_in:
            message = f"tool-runner module {entry.module} does not exist"
            if not config.tool_runner_configured:
                message += (
                    " (the default runner; configure tool-runner, or tool-runner = [] "
                    "for a project without a runner)"
                )
            where = config.source or path
            contract.missing.append(
                Finding(project.display(where), 1, 1, ToolRunnerMissing.code, message)
            )
        return contract
    source = project.source(path)
    if source is None:
        return contract  # reported as GOV000 (or unreadable) by the file scan
    graph = _RunnerModules(project, path, source)
    module = graph.runner
    function = module.functions.get(entry.qualified_name)
    display = source.display_path

    def missing(node: ast.AST | None, message: str) -> None:
        where = node if node is not None else ast.Module(body=[], type_ignores=[])
        contract.missing.append(finding_at(display, ToolRunnerMissing, where, message))

    if function is None:
        owner, _, _ = entry.qualified_name.rpartition(".")
        klass = module.classes.get(owner) if owner else None
        if klass is not None:
            missing(klass, f"class {owner} has no {entry.qualified_name.rsplit('.', 1)[1]} method")
        else:
            kind = "class" if owner else "function"
            missing(None, f"no {kind} {owner or entry.qualified_name} in {entry.module}")
        return contract
    method = entry.qualified_name in module.methods
    if not _callable_with_two_arguments(function, method=method):
        missing(
            function, f"{entry.qualified_name} cannot be called as {function.name}(name, payload)"
        )
    sites = graph.execution_sites(entry.qualified_name)
    if not sites:
        methods = ", ".join(project.options.plugin_methods)
        missing(function, f"{entry.qualified_name} reaches no plugin execution ({methods})")
    parents = {
        child: parent for parent in ast.walk(function) for child in ast.iter_child_nodes(parent)
    }
    metrics = project.config.metrics_calls
    for site in sites:
        guarding = list(_guarding_finally_blocks(site, parents))
        if not guarding:
            contract.no_finally.append(
                finding_at(
                    display,
                    ToolRunnerNoFinally,
                    site,
                    f"plugin execution in {entry.qualified_name} is not inside a try "
                    "with a finally",
                )
            )
            continue
        skipping = [exits_skipping(block, _makes_call(metrics)) for block in guarding]
        if all(skipping):
            ways = ", ".join(_EXIT_WORDS[way] for way in sorted(skipping[0]))
            contract.metrics_skipped.append(
                finding_at(
                    display,
                    MetricsNotInFinally,
                    site,
                    f"no finally around the plugin execution in {entry.qualified_name} calls "
                    f"{' or '.join(metrics)}() on every path (skipped on the way to {ways})",
                )
            )
    return contract


Reference = tuple[ast.AST, list[str], str | None]
"""A name used in a function: the node, the functions of its module it may mean (innermost
scope first), and its dotted name when an import or a class of the module binds it."""


class _ModuleFunctions:
    """A Checker listener: the functions of a module, what each executes and refers to."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.functions: dict[str, FunctionNode] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.methods: set[str] = set()
        self.executions: dict[str, list[ast.AST]] = {}
        self.references: dict[str, list[Reference]] = {}

    def _define(self, node: FunctionNode, checker: Checker) -> None:
        qualified = ".".join([*checker.scope_names, node.name])
        self.functions.setdefault(qualified, node)
        if ".".join(checker.scope_names) in self.classes:
            self.methods.add(qualified)

    visit_FunctionDef = visit_AsyncFunctionDef = _define

    def visit_ClassDef(self, node: ast.ClassDef, checker: Checker) -> None:
        self.classes.setdefault(".".join([*checker.scope_names, node.name]), node)

    def _executes(self, node: ast.AST, checker: Checker) -> None:
        if checker.executed_plugin(node) is PLUGIN:
            self.executions.setdefault(".".join(checker.scope_names), []).append(node)

    visit_Call = _executes

    def visit_Attribute(self, node: ast.Attribute, checker: Checker) -> None:
        self._executes(node, checker)
        if isinstance(node.ctx, ast.Load):
            if last_name(node.value) in ("self", "cls"):
                # self.method: a method of an enclosing class, never a module-level function
                candidates = _candidates(checker.scope_names, node.attr)[:-1]
                self._refer(node, candidates, None, checker)
            elif (qualified := checker.qualified_name(node)) is not None:
                self._refer(node, [], qualified, checker)  # module.function, Class.function

    def visit_Name(self, node: ast.Name, checker: Checker) -> None:
        if isinstance(node.ctx, ast.Load):
            candidates = _candidates(checker.scope_names, node.id)
            self._refer(node, candidates, checker.qualified_name(node), checker)

    def _refer(
        self, node: ast.AST, candidates: list[str], qualified: str | None, checker: Checker
    ) -> None:
        scope = ".".join(checker.scope_names)
        self.references.setdefault(scope, []).append((node, candidates, qualified))


Function = tuple[str, str]
"""A function of one of the modules followed: the module's dotted name, its qualified name."""


class _RunnerModules:
    """The runner's module and the ``runner-delegates`` it imports, transitively.

    Only those, named in the configuration: following every import of a project
    would make each scan parse much of it again.
    """

    def __init__(self, project: Project, path: Path, source: SourceFile) -> None:
        self._project = project
        self._delegates = [project.config.path(d) for d in project.config.runner_delegates]
        self._root = _import_root(path, source.module)
        self.modules: dict[str, _ModuleFunctions] = {}
        self.runner = self._analyse(source)
        pending = [self.runner]
        while pending:
            module = pending.pop()
            for qualified in _qualified_references(module):
                found = self._load(qualified)
                if found is not None:
                    pending.append(found)

    def _analyse(self, source: SourceFile) -> _ModuleFunctions:
        module = _ModuleFunctions(source.module)
        Checker(source, [module]).run()
        self.modules[source.module] = module
        return module

    def _load(self, dotted: str) -> _ModuleFunctions | None:
        """The module ``dotted`` names (or the one holding what it names), newly analysed."""
        parts = dotted.split(".")
        for length in range(len(parts), 0, -1):
            name = ".".join(parts[:length])
            if name in self.modules:
                return None
            folder = self._root.joinpath(*parts[:length])
            for path in (folder.with_suffix(".py"), folder / "__init__.py"):
                if self._delegated(path) and path.is_file():
                    source = self._project.source(path)
                    return self._analyse(source) if source is not None else None
        return None

    def _delegated(self, path: Path) -> bool:
        return any(path == delegate or delegate in path.parents for delegate in self._delegates)

    def _resolve(self, module: _ModuleFunctions, reference: Reference) -> Function | None:
        _, candidates, qualified = reference
        local = next((name for name in candidates if name in module.functions), None)
        if local is not None:
            return module.module, local
        if qualified is None:
            return None
        parts = qualified.split(".")
        for length in range(len(parts) - 1, 0, -1):
            target = self.modules.get(".".join(parts[:length]))
            if target is not None:
                name = ".".join(parts[length:])
                return (target.module, name) if name in target.functions else None
        return None

    def _reaching(self) -> set[Function]:
        """Functions that execute a plugin, directly or through the others followed."""
        reaching: set[Function] = set()
        refers_to: dict[Function, set[Function]] = {}
        for module in self.modules.values():
            resolved = {
                scope: {
                    target
                    for reference in references
                    if (target := self._resolve(module, reference)) is not None
                }
                for scope, references in module.references.items()
            }
            for name in module.functions:
                function = (module.module, name)
                if any(_within(scope, name) for scope in module.executions):
                    reaching.add(function)
                refers_to[function] = set[Function]().union(
                    *(targets for scope, targets in resolved.items() if _within(scope, name))
                )
        while more := {f for f, targets in refers_to.items() if targets & reaching} - reaching:
            reaching |= more
        return reaching

    def execution_sites(self, function: str) -> list[ast.AST]:
        """Nodes in the runner's ``function`` from which a plugin executes, in source order."""
        runner = self.runner
        reaching = self._reaching() - {(runner.module, function)}
        sites: list[ast.AST] = []
        for scope, nodes in runner.executions.items():
            if _within(scope, function):
                sites.extend(nodes)
        for scope, references in runner.references.items():
            if _within(scope, function):
                sites.extend(r[0] for r in references if self._resolve(runner, r) in reaching)
        return sorted(
            sites, key=lambda node: (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        )


def _within(scope: str, function: str) -> bool:
    """Whether ``scope`` is ``function`` or nested in it."""
    return scope == function or scope.startswith(function + ".")


def _qualified_references(module: _ModuleFunctions) -> set[str]:
    """The dotted names ``module`` refers to (through its imports, or its own classes)."""
    return {
        qualified
        for references in module.references.values()
        for _, _, qualified in references
        if qualified is not None
    }


def _import_root(path: Path, module: str) -> Path:
    """The folder dotted module names start from, seen from the file of ``module``."""
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    return path.parents[depth]


def _candidates(scope_names: list[str], name: str) -> list[str]:
    """What ``name`` may refer to from ``scope_names``: innermost scope first, module last."""
    return [".".join([*scope_names[:depth], name]) for depth in range(len(scope_names), -1, -1)]


def _callable_with_two_arguments(function: FunctionNode, *, method: bool) -> bool:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
    )
    if method and not static:
        positional = positional[1:]
    required = len(positional) - len(arguments.defaults)
    takes_two = len(positional) >= 2 or arguments.vararg is not None
    keyword_only_required = any(default is None for default in arguments.kw_defaults)
    return takes_two and required <= 2 and not keyword_only_required


def _guarding_finally_blocks(
    node: ast.AST, parents: dict[ast.AST, ast.AST]
) -> Iterator[list[ast.stmt]]:
    """The ``finally`` bodies of every ``try`` whose body, except or else holds ``node``."""
    child = node
    while child in parents:
        parent = parents[child]
        if isinstance(parent, ast.Try | ast.TryStar) and parent.finalbody:
            protected = [*parent.body, *parent.handlers, *parent.orelse]
            if any(child is item for item in protected):
                yield parent.finalbody
        child = parent


def _makes_call(names: tuple[str, ...]) -> Callable[[ast.stmt], bool]:
    def makes_call(statement: ast.stmt) -> bool:
        value = getattr(statement, "value", None)
        if isinstance(statement, ast.Expr | ast.Assign | ast.AnnAssign | ast.Return):
            if isinstance(value, ast.Await):
                value = value.value
            return isinstance(value, ast.Call) and last_name(value.func) in names
        return False

    return makes_call
