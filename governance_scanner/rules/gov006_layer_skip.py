"""GOV006 layer-skip."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from governance_scanner.rules.base import Finding, ModuleContext, PendingFinding, Rule

RUNNER_CLASS = "ToolRunner"


class LayerSkip(Rule):
    """``ToolRunner`` is used outside its allowed callers.

    Requests go API -> AnalysisExecutionService -> JobExecutionService ->
    PluginExecutionService -> ToolRunner, each layer calling only the next. Code
    that reaches for ToolRunner directly runs plugins without a Job, so the run
    is never recorded or inspectable. Allowed callers are configured with
    ``runner_callers``.

    Bad (in ``execution/api/views.py``)::

        result, error = ToolRunner().run("text_stats", payload)

    Good::

        job = AnalysisExecutionService().execute("text_stats", payload, request.user)
    """

    code = "GOV006"
    name = "layer-skip"
    message = "ToolRunner used outside its allowed callers; go through PluginExecutionService"
    trigger_words = (RUNNER_CLASS,)

    def applies_to(self, context: ModuleContext) -> bool:
        return not context.is_runner_caller and super().applies_to(context)

    def check(self, context: ModuleContext) -> Iterator[Finding | PendingFinding]:
        for node in ast.walk(context.tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                context.add_import(node)
        for node in ast.walk(context.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                qualified = context.qualified_name(node) or node.id
                if qualified.rsplit(".", 1)[-1] == RUNNER_CLASS:
                    yield context.finding(type(self), node)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == RUNNER_CLASS
                and isinstance(node.ctx, ast.Load)
            ):
                yield context.finding(type(self), node)
