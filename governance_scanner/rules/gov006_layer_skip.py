"""GOV006 layer-skip."""

from __future__ import annotations

import ast
import re

from governance_scanner.checker import Checker, FileOptions, SourceFile, word_pattern
from governance_scanner.rules.base import FileRule


class LayerSkip(FileRule):
    """The governed runner (``ToolRunner``) is used outside its allowed callers.

    Requests go API -> AnalysisExecutionService -> JobExecutionService ->
    PluginExecutionService -> ToolRunner, each layer calling only the next. Code
    that reaches for ToolRunner directly runs plugins without a Job, so the run
    is never recorded or inspectable. The runner's name comes from
    ``tool-runner`` (the class of a method, or the function); allowed callers are
    configured with ``runner-callers``.

    Bad (in ``execution/api/views.py``)::

        result, error = ToolRunner().run("text_stats", payload)

    Good::

        job = AnalysisExecutionService().execute("text_stats", payload, request.user)
    """

    code = "GOV006"
    name = "layer-skip"
    message = "ToolRunner used outside its allowed callers; go through PluginExecutionService"

    def report_runner(self, node: ast.AST, runner: str) -> None:
        """The default message names this project's layers; another runner is named itself."""
        if runner == "ToolRunner":
            self.report(node)
        else:
            self.report(node, f"{runner} used outside its allowed callers (runner-callers)")

    @classmethod
    def trigger_words(cls, options: FileOptions) -> tuple[str, ...]:
        return options.runner_names

    @classmethod
    def triggers(cls, options: FileOptions) -> tuple[re.Pattern[str], ...]:
        return (word_pattern(options.runner_names),)

    @classmethod
    def applies_to(cls, source: SourceFile) -> bool:
        # tool-runner = []: no runner, so no layer to skip.
        runners = source.options.runner_names
        return bool(runners) and not source.is_runner_caller and super().applies_to(source)

    def visit_Name(self, node: ast.Name, checker: Checker) -> None:
        if isinstance(node.ctx, ast.Load):
            qualified = checker.qualified_name(node) or node.id
            runner = qualified.rsplit(".", 1)[-1]
            if runner in checker.options.runner_names:
                self.report_runner(node, runner)

    def visit_Attribute(self, node: ast.Attribute, checker: Checker) -> None:
        if node.attr in checker.options.runner_names and isinstance(node.ctx, ast.Load):
            self.report_runner(node, node.attr)
