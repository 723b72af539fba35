"""GOV002-GOV004: the ToolRunner module must exist and keep its guarantees.

These rules look at one file, the configured ToolRunner module, once per scan.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from governance_scanner.rules.base import Finding, ModuleContext, Rule
from governance_scanner.rules.gov001_ungoverned_plugin_call import _PluginRunVisitor
from governance_scanner.rules.plugin_values import call_name

METRICS_CALL = "update_execution_metrics"


class ToolRunnerMissing(Rule):
    """The ToolRunner module, its class or its ``run(plugin_name, payload)`` is missing.

    Everything else relies on one choke point. If the configured module does
    not exist, has no ``ToolRunner`` class, or its ``run`` cannot be called as
    ``run(plugin_name, payload)``, callers either break or bypass it.

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


class ToolRunnerNoFinally(Rule):
    """The plugin call in ``ToolRunner.run`` is not inside a ``try`` with a ``finally``.

    Metrics are recorded in ``finally`` so that no execution, failed or
    timed out, goes uncounted. A plugin call outside such a ``try`` can leave
    without passing through it.

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


class MetricsNotInFinally(Rule):
    """No ``finally`` around the plugin call records metrics on every path.

    ``update_execution_metrics(...)`` must run whatever happened. A call under
    an ``if`` or after a ``return`` in the ``finally`` can be skipped; a call in
    its own ``try``/``except`` inside the ``finally`` cannot.

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


def check_tool_runner(context: ModuleContext) -> Iterator[Finding]:
    """GOV002 for the class and signature, then GOV003/GOV004 for each plugin call."""
    runner = next(
        (
            node
            for node in context.tree.body
            if isinstance(node, ast.ClassDef) and node.name == "ToolRunner"
        ),
        None,
    )
    if runner is None:
        yield Finding(
            context.display_path,
            1,
            1,
            ToolRunnerMissing.code,
            "no class ToolRunner in the ToolRunner module",
        )
        return
    run = next(
        (
            node
            for node in runner.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run"
        ),
        None,
    )
    if run is None:
        yield context.finding(ToolRunnerMissing, runner, "class ToolRunner has no run method")
        return
    if not _callable_with_two_arguments(run):
        yield context.finding(
            ToolRunnerMissing, run, "ToolRunner.run cannot be called as run(plugin_name, payload)"
        )
    yield from _check_plugin_calls(context, run)


def _callable_with_two_arguments(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
    )
    if not static:
        positional = positional[1:]
    required = len(positional) - len(arguments.defaults)
    takes_two = len(positional) >= 2 or arguments.vararg is not None
    keyword_only_required = any(default is None for default in arguments.kw_defaults)
    return takes_two and required <= 2 and not keyword_only_required


def _check_plugin_calls(
    context: ModuleContext, run: ast.FunctionDef | ast.AsyncFunctionDef
) -> Iterator[Finding]:
    finder = _PluginRunVisitor(ToolRunnerNoFinally(), context)
    finder.visit(run)
    parents = {child: parent for parent in ast.walk(run) for child in ast.iter_child_nodes(parent)}
    for reference in finder.plugin_references:
        guarding = list(_guarding_finally_blocks(reference, parents))
        if not guarding:
            yield context.finding(ToolRunnerNoFinally, reference)
        elif not any(_records_metrics(block) for block in guarding):
            yield context.finding(MetricsNotInFinally, reference)


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


def _records_metrics(block: list[ast.stmt]) -> bool:
    """True if ``block`` calls update_execution_metrics on every path through it."""
    for statement in block:
        if isinstance(statement, ast.Return | ast.Raise | ast.Break | ast.Continue):
            return False
        if isinstance(statement, ast.Expr | ast.Assign | ast.AnnAssign | ast.AugAssign):
            if _is_metrics_call(statement.value):
                return True
        elif isinstance(
            statement, ast.Try | ast.TryStar | ast.With | ast.AsyncWith
        ) and _records_metrics(statement.body):
            return True
    return False


def _is_metrics_call(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Await):
        node = node.value
    return isinstance(node, ast.Call) and call_name(node.func) == METRICS_CALL
