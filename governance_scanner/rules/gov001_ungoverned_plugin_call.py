"""GOV001 ungoverned-plugin-call."""

from __future__ import annotations

import ast
import re

from governance_scanner.checker import (
    PLUGIN,
    Checker,
    ClassRef,
    FileOptions,
    SourceFile,
    word_pattern,
)
from governance_scanner.rules.base import FileRule, PendingFinding, finding_at

# Tests of an attribute, not uses: callable(p.run), hasattr(p, "run"), p.run is None.
_ATTRIBUTE_TESTS = ("callable", "hasattr")


class UngovernedPluginCall(FileRule):
    """A plugin's ``run`` is referenced outside the governed runner.

    Only the governed runner (``ToolRunner.run`` here; see ``tool-runner``) may
    execute a plugin: it validates input and output, turns failures into error
    envelopes and records metrics. Calling ``run`` (or another of the configured
    ``plugin-methods``) anywhere else, or handing it to something that will call
    it, skips all of that. References count as much as calls: aliases,
    callbacks, ``getattr``, ``methodcaller`` and unbound calls on the class.
    Testing the attribute (``callable(p.run)``, ``hasattr(p, "run")``,
    ``p.run is None``) executes nothing and is not reported.

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

    @classmethod
    def trigger_words(cls, options: FileOptions) -> tuple[str, ...]:
        return options.plugin_methods

    @classmethod
    def triggers(cls, options: FileOptions) -> tuple[re.Pattern[str], ...]:
        return (word_pattern(options.plugin_methods, r"\.(?:{0})\b|[\"'](?:{0})[\"']"),)

    @classmethod
    def applies_to(cls, source: SourceFile) -> bool:
        return not source.is_tool_runner and super().applies_to(source)

    def __init__(self, source: SourceFile) -> None:
        super().__init__(source)
        self._tests: set[int] = set()

    def _report(self, node: ast.AST, checker: Checker) -> None:
        kind = checker.executed_plugin(node)
        if kind is PLUGIN:
            self.report(node)
        elif isinstance(kind, ClassRef):
            finding = finding_at(self.source.display_path, type(self), node)
            self.found.append(PendingFinding(finding, kind.qualified_name))

    def visit_Attribute(self, node: ast.Attribute, checker: Checker) -> None:
        if id(node) not in self._tests:
            self._report(node, checker)

    def visit_Call(self, node: ast.Call, checker: Checker) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _ATTRIBUTE_TESTS and node.args:
            self._tests.add(id(node.args[0]))
        else:
            self._report(node, checker)

    def visit_Compare(self, node: ast.Compare, checker: Checker) -> None:
        if all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
            self._tests.update(id(operand) for operand in (node.left, *node.comparators))
