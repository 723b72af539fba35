"""GOV001 ungoverned-plugin-call."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from governance_scanner.rules.base import (
    FastNodeVisitor,
    Finding,
    ModuleContext,
    PendingFinding,
    Rule,
    register_class,
)
from governance_scanner.rules.plugin_values import (
    PLUGIN,
    ClassRef,
    Kind,
    PluginScopes,
    call_name,
)


class UngovernedPluginCall(Rule):
    """A plugin's ``run`` is referenced outside the ToolRunner module.

    Only ``ToolRunner.run`` may execute a plugin: it validates input and output,
    turns failures into error envelopes and records metrics. Calling ``run``
    anywhere else, or handing it to something that will call it, skips all of
    that. References count as much as calls: aliases, callbacks, ``getattr``,
    ``methodcaller`` and unbound calls on the class.

    Bad::

        plugin = registry.get_plugin("text_stats")
        result = plugin.run(payload)
        executor.submit(plugin.run, payload)
        getattr(plugin, "run")(payload)

    Good::

        result, error = PluginExecutionService().execute("text_stats", payload)
    """

    code = "GOV001"
    name = "ungoverned-plugin-call"
    message = "plugin.run referenced outside ToolRunner; execute plugins through ToolRunner"
    trigger_words = ("run",)
    triggers = (re.compile(r"\.run\b|[\"']run[\"']"),)

    def applies_to(self, context: ModuleContext) -> bool:
        return not context.is_tool_runner and super().applies_to(context)

    def check(self, context: ModuleContext) -> Iterator[Finding | PendingFinding]:
        visitor = _PluginRunVisitor(self, context)
        visitor.visit(context.tree)
        yield from visitor.found


def report(
    rule: Rule, context: ModuleContext, node: ast.AST, kind: Kind
) -> Finding | PendingFinding | None:
    if kind is PLUGIN:
        return context.finding(type(rule), node)
    if isinstance(kind, ClassRef):
        return PendingFinding(context.finding(type(rule), node), kind.qualified_name)
    return None


class _PluginRunVisitor(FastNodeVisitor):
    def __init__(self, rule: Rule, context: ModuleContext) -> None:
        self.rule = rule
        self.context = context
        self.scopes = PluginScopes(context)
        self.found: list[Finding | PendingFinding] = []
        self.plugin_references: list[ast.AST] = []  # certain ones, for GOV003/GOV004

    def _report(self, node: ast.AST, kind: Kind) -> None:
        finding = report(self.rule, self.context, node, kind)
        if finding is not None:
            self.found.append(finding)
        if kind is PLUGIN:
            self.plugin_references.append(node)

    # Scopes and bindings ---------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        self.context.add_import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.context.add_import(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        register_class(self.context, node)  # classes inside functions count too
        self.generic_visit(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.scopes.push()
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self.scopes.bind_assignment(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self.scopes.bind_assignment(node.target, node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self.scopes.bind(node.target, self.scopes.classify(node.value))

    def _visit_for(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.scopes.bind_iteration(node.target, node.iter)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_For = visit_AsyncFor = _visit_for

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self.scopes.bind_iteration(node.target, node.iter)
        for condition in node.ifs:
            self.visit(condition)

    def _visit_comprehension_scope(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        self.scopes.push()
        for generator in node.generators:
            self.visit(generator)
        for child in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            self.visit(child)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = (
        _visit_comprehension_scope
    )

    def _visit_with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.scopes.bind(item.optional_vars, self.scopes.classify(item.context_expr))
        for statement in node.body:
            self.visit(statement)

    visit_With = visit_AsyncWith = _visit_with

    # What is reported ------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "run" and isinstance(node.ctx, ast.Load):
            self._report(node, self.scopes.classify(node.value))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node.func)
        first = node.args[0] if node.args else None
        second = node.args[1] if len(node.args) > 1 else None
        if name == "getattr" and _is_run_string(second) and first is not None:
            self._report(node, self.scopes.classify(first))
        elif name in ("methodcaller", "attrgetter") and _is_run_string(first):
            self._report(node, PLUGIN)  # by-name execution: no receiver to clear it
        self.generic_visit(node)


def _is_run_string(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == "run"
