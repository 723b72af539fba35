"""What every rule sees: one parsed module, its imports, and where to report."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    message: str


@dataclass(frozen=True)
class PendingFinding:
    """A finding that holds only if ``class_name`` turns out to derive from a plugin base.

    Class hierarchies span files, so this is decided once every file is parsed.
    """

    finding: Finding
    class_name: str


@dataclass
class ModuleContext:
    """One parsed file and what is known about its names."""

    tree: ast.Module
    source: str
    display_path: str
    module: str
    package: str
    is_tool_runner: bool = False
    is_state_machine: bool = False
    is_runner_caller: bool = False
    imports: dict[str, str] = field(default_factory=dict)
    local_classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def finding(self, rule: type[Rule], node: ast.AST, message: str | None = None) -> Finding:
        return Finding(
            path=self.display_path,
            line=getattr(node, "lineno", 1),
            column=getattr(node, "col_offset", 0) + 1,
            rule=rule.code,
            message=message or rule.message,
        )

    # Names ----------------------------------------------------------------------

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    top = alias.name.split(".", 1)[0]
                    self.imports[top] = top
            return
        base = self._import_base(node)
        for alias in node.names:
            if alias.name != "*":
                self.imports[alias.asname or alias.name] = (
                    f"{base}.{alias.name}" if base else alias.name
                )

    def _import_base(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.package.split(".") if self.package else []
        if node.level > 1:
            parts = parts[: len(parts) - (node.level - 1)]
        if node.module:
            parts.append(node.module)
        return ".".join(parts)

    def qualified_name(self, node: ast.expr) -> str | None:
        """The dotted name ``node`` refers to, through imports and local classes."""
        if isinstance(node, ast.Name):
            if node.id in self.imports:
                return self.imports[node.id]
            if node.id in self.local_classes:
                return f"{self.module}.{node.id}" if self.module else node.id
            return None
        if isinstance(node, ast.Attribute):
            owner = self.qualified_name(node.value)
            return f"{owner}.{node.attr}" if owner else None
        return None

    def base_name(self, node: ast.expr) -> str:
        """A class base as a dotted name, resolved where possible."""
        if isinstance(node, ast.Subscript):  # Generic[T], Base[Config]
            node = node.value
        if isinstance(node, ast.Call):  # with_metaclass(...) and friends
            node = node.func
        resolved = self.qualified_name(node)
        if resolved:
            return resolved
        try:
            return ast.unparse(node)
        except Exception:  # pragma: no cover - unparse handles every expression
            return "?"

    def class_qualified_name(self, name: str) -> str:
        return f"{self.module}.{name}" if self.module else name


def collect_module_names(context: ModuleContext) -> None:
    """Imports and class definitions of the module's top level (and its if/try blocks)."""
    pending: list[list[ast.stmt]] = [context.tree.body]
    classes: list[ast.ClassDef] = []
    while pending:
        for statement in pending.pop():
            if isinstance(statement, ast.Import | ast.ImportFrom):
                context.add_import(statement)
            elif isinstance(statement, ast.ClassDef):
                classes.append(statement)
                pending.append(statement.body)
            elif isinstance(statement, ast.If):
                pending.extend([statement.body, statement.orelse])
            elif isinstance(statement, ast.Try):
                pending.extend([statement.body, statement.orelse, statement.finalbody])
                pending.extend(handler.body for handler in statement.handlers)
    for klass in classes:
        register_class(context, klass)


def register_class(context: ModuleContext, node: ast.ClassDef) -> None:
    context.local_classes.setdefault(node.name, ())
    context.local_classes[node.name] = tuple(context.base_name(base) for base in node.bases)


class FastNodeVisitor(ast.NodeVisitor):
    """``ast.NodeVisitor`` with its method lookup cached per node class.

    Same ``visit_<Node>`` protocol; it skips expression contexts (``Load``,
    ``Store``), which no rule looks at. About twice as fast on large files.
    """

    _methods: ClassVar[dict[type[ast.AST], Any]]
    _children: ClassVar[dict[type[ast.AST], tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._methods = {}

    def visit(self, node: ast.AST) -> Any:
        kind = node.__class__
        method: Any = self._methods.get(kind)
        if method is None:
            method = getattr(type(self), "visit_" + kind.__name__, type(self).generic_visit)
            self._methods[kind] = method
        return method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        kind = node.__class__
        fields = self._children.get(kind)
        if fields is None:
            fields = tuple(name for name in kind._fields if name != "ctx")
            self._children[kind] = fields
        for name in fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)


class Rule:
    """One rule: a stable code, a name, a one-line message; the docstring explains it.

    ``triggers`` are cheap text tests: a file is walked only if its source
    contains every word in ``trigger_words`` and matches every ``triggers``
    pattern. Files that cannot hold a violation cost one substring search.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    message: ClassVar[str]
    trigger_words: ClassVar[tuple[str, ...]] = ()
    triggers: ClassVar[tuple[re.Pattern[str], ...]] = ()

    def applies_to(self, context: ModuleContext) -> bool:
        source = context.source
        return all(word in source for word in self.trigger_words) and all(
            pattern.search(source) for pattern in self.triggers
        )

    def check(self, context: ModuleContext) -> Iterator[Finding | PendingFinding]:
        raise NotImplementedError
