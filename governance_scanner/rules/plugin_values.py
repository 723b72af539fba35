"""Which expressions hold a plugin (or a plugin class)? Shared by GOV001 and GOV003.

``PLUGIN`` means "certainly a plugin"; a ``ClassRef`` means "an instance, or the
class itself, of this class", which is a plugin if the class derives from a
plugin base, decided once the class hierarchy of every scanned file is known.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Final

from governance_scanner.rules.base import ModuleContext


class _Plugin:
    def __repr__(self) -> str:
        return "PLUGIN"


PLUGIN: Final = _Plugin()


@dataclass(frozen=True)
class ClassRef:
    qualified_name: str


Kind = _Plugin | ClassRef | None


def is_plugin_name(name: str) -> bool:
    """``plugin``, ``_plugin``, ``*_plugin``; not ``plugin_name`` or ``plugin_runner``."""
    return name in ("plugin", "_plugin") or name.endswith("_plugin")


def is_plugins_container(node: ast.expr) -> bool:
    name = (
        node.id
        if isinstance(node, ast.Name)
        else node.attr
        if isinstance(node, ast.Attribute)
        else ""
    )
    return name.endswith("plugins")


def call_name(node: ast.expr) -> str | None:
    """``f`` for ``f(...)`` and ``obj.f(...)``; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class PluginScopes:
    """Names bound to plugins, per scope (module, then nested functions)."""

    def __init__(self, context: ModuleContext) -> None:
        self.context = context
        self.stack: list[dict[str, Kind]] = [{}]

    def push(self) -> None:
        self.stack.append({})

    def pop(self) -> None:
        self.stack.pop()

    def lookup(self, name: str) -> Kind:
        for scope in reversed(self.stack):
            if name in scope:
                return scope[name]
        return None

    def bind(self, target: ast.expr, kind: Kind) -> None:
        if isinstance(target, ast.Name):
            if kind is None:
                self.stack[-1].pop(target.id, None)
            else:
                self.stack[-1][target.id] = kind
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:  # unknown element kinds: forget what we knew
                self.bind(element, None)

    def bind_assignment(self, target: ast.expr, value: ast.expr) -> None:
        if (
            isinstance(target, ast.Tuple | ast.List)
            and isinstance(value, ast.Tuple | ast.List)
            and len(target.elts) == len(value.elts)
        ):
            for element, item in zip(target.elts, value.elts, strict=True):
                self.bind_assignment(element, item)
            return
        self.bind(target, self.classify(value))

    def bind_iteration(self, target: ast.expr, iterable: ast.expr) -> None:
        """``for plugin in registry.list_plugins()`` and iteration over a plugin mapping."""
        kind: Kind = None
        if isinstance(iterable, ast.Call):
            name = call_name(iterable.func)
            receiver = iterable.func.value if isinstance(iterable.func, ast.Attribute) else None
            over_mapping = receiver is not None and is_plugins_container(receiver)
            if name == "list_plugins" or (name == "values" and over_mapping):
                kind = PLUGIN
            elif (
                name == "items"
                and receiver is not None
                and is_plugins_container(receiver)
                and isinstance(target, ast.Tuple)
                and len(target.elts) == 2
            ):
                self.bind(target.elts[0], None)
                self.bind(target.elts[1], PLUGIN)
                return
        self.bind(target, kind)

    def classify(self, node: ast.expr) -> Kind:
        if isinstance(node, ast.Name):
            if is_plugin_name(node.id):
                return PLUGIN
            known = self.lookup(node.id)
            if known is not None:
                return known
            qualified = self.context.qualified_name(node)
            return ClassRef(qualified) if qualified else None
        if isinstance(node, ast.Attribute):
            if is_plugin_name(node.attr):
                return PLUGIN
            qualified = self.context.qualified_name(node)
            return ClassRef(qualified) if qualified else None
        if isinstance(node, ast.Subscript):
            return PLUGIN if is_plugins_container(node.value) else None
        if isinstance(node, ast.NamedExpr):
            return self.classify(node.value)
        if isinstance(node, ast.Call):
            return self._classify_call(node)
        return None

    def _classify_call(self, node: ast.Call) -> Kind:
        func = node.func
        name = call_name(func)
        if name == "get_plugin":
            return PLUGIN
        if name == "load" and not node.args and not node.keywords:
            return PLUGIN  # entry_point.load(): a plugin class
        if isinstance(func, ast.Name) and func.id == "type" and len(node.args) == 1:
            return self.classify(node.args[0])  # type(plugin): its class
        # Calling a plugin class gives a plugin; calling a plugin's method gives who knows.
        if isinstance(func, ast.Call) or (isinstance(func, ast.Name) and self.lookup(func.id)):
            return self.classify(func)
        if isinstance(func, ast.Name | ast.Attribute):
            kind = self.classify(func)
            if isinstance(kind, ClassRef):
                return kind
            if kind is PLUGIN and _looks_like_class(func):
                return PLUGIN
        return None


def _looks_like_class(func: ast.expr) -> bool:
    name = call_name(func) or ""
    return name[:1].isupper()
