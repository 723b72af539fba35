"""The shared visitor: one walk per file that knows scopes, imports, plugins and Jobs.

Rules do not walk trees or track names themselves. The :class:`Checker` walks a
file once; at each node it first calls the hooks of the rules that apply to the
file (``visit_<Node>(node, checker)``), then visits the children and records the
bindings the node makes. Hooks ask the checker what an expression is:

* :meth:`Checker.plugin_kind`: ``PLUGIN`` (certainly a plugin), a :class:`ClassRef`
  (an instance, or the class itself, of a class that is a plugin if it derives
  from a plugin base, decided once every scanned file's classes are known), or None;
* :meth:`Checker.executed_plugin`: whether a node executes a plugin (``p.run``,
  ``getattr(p, "run")``, ``methodcaller("run")``) and on what;
* :meth:`Checker.is_job` and :meth:`Checker.is_job_query`: Job rows and queries.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from governance_scanner.config import ScannerConfig


@dataclass(frozen=True)
class FileOptions:
    """What a worker needs from the configuration to analyse one file (picklable)."""

    plugin_methods: tuple[str, ...] = ("run",)
    plugin_factories: tuple[str, ...] = ()
    job_models: tuple[str, ...] = ("Job",)
    runner_names: tuple[str, ...] = ("ToolRunner",)

    @classmethod
    def from_config(cls, config: ScannerConfig) -> FileOptions:
        return cls(
            plugin_methods=config.plugin_methods,
            plugin_factories=config.plugin_factories,
            job_models=config.job_models,
            runner_names=tuple(sorted({entry.owner for entry in config.tool_runner})),
        )


@functools.lru_cache(maxsize=64)
def word_pattern(words: tuple[str, ...], template: str = r"\b(?:{})\b") -> re.Pattern[str]:
    """A regex matching any of ``words``, placed into ``template``."""
    return re.compile(template.format("|".join(re.escape(word) for word in words)))


@dataclass
class SourceFile:
    """One parsed file and where it stands in the project."""

    tree: ast.Module
    text: str
    display_path: str
    module: str = ""
    package: str = ""
    is_tool_runner: bool = False
    is_state_machine: bool = False
    is_runner_caller: bool = False
    options: FileOptions = field(default_factory=FileOptions)


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


# What a value is --------------------------------------------------------------------


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


def last_name(node: ast.expr) -> str:
    """``f`` for ``f`` and ``obj.f``; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def is_plugins_container(node: ast.expr) -> bool:
    return last_name(node).endswith("plugins")


def _constant_string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Names:
    """Imports and classes of one module: what a name refers to."""

    def __init__(self, source: SourceFile) -> None:
        self.module = source.module
        self.package = source.package
        self.imports: dict[str, str] = {}
        self.module_imports: set[str] = set()  # names bound by ``import x`` (modules, surely)
        self.classes: dict[str, tuple[str, ...]] = {}

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".", 1)[0]
                self.imports[name] = alias.name if alias.asname else name
                self.module_imports.add(name)
            return
        base = self._import_base(node)
        for alias in node.names:
            if alias.name != "*":
                name = alias.asname or alias.name
                self.imports[name] = f"{base}.{alias.name}" if base else alias.name
                self.module_imports.discard(name)

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
            if node.id in self.classes:
                return self.class_qualified_name(node.id)
            return None
        if isinstance(node, ast.Attribute):
            owner = self.qualified_name(node.value)
            return f"{owner}.{node.attr}" if owner else None
        return None

    def is_module_attribute(self, node: ast.Attribute) -> bool:
        """``gmsh.plugin`` where ``gmsh`` was imported with ``import gmsh``."""
        root: ast.expr = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        return isinstance(root, ast.Name) and root.id in self.module_imports

    def class_qualified_name(self, name: str) -> str:
        return f"{self.module}.{name}" if self.module else name

    def add_class(self, node: ast.ClassDef) -> None:
        self.classes.setdefault(node.name, ())
        self.classes[node.name] = tuple(self._base_name(base) for base in node.bases)

    def _base_name(self, node: ast.expr) -> str:
        if isinstance(node, ast.Subscript):  # Generic[T], Base[Config]
            node = node.value
        if isinstance(node, ast.Call):  # with_metaclass(...) and friends
            node = node.func
        return self.qualified_name(node) or ast.unparse(node)

    def collect_top_level(self, tree: ast.Module) -> None:
        """Imports and classes of the top level (and its if/try blocks), before the walk."""
        pending: list[list[ast.stmt]] = [tree.body]
        classes: list[ast.ClassDef] = []
        while pending:
            for statement in pending.pop():
                if isinstance(statement, ast.Import | ast.ImportFrom):
                    self.add_import(statement)
                elif isinstance(statement, ast.ClassDef):
                    classes.append(statement)
                    pending.append(statement.body)
                elif isinstance(statement, ast.If):
                    pending.extend([statement.body, statement.orelse])
                elif isinstance(statement, ast.Try):
                    pending.extend([statement.body, statement.orelse, statement.finalbody])
                    pending.extend(handler.body for handler in statement.handlers)
        for klass in classes:
            self.add_class(klass)


_SQL_STATEMENTS = ("query", "update", "insert")


_HOOK_NAMES: dict[type, tuple[tuple[type[ast.AST], str], ...]] = {}


def _hook_names(listener: type) -> tuple[tuple[type[ast.AST], str], ...]:
    """The ``visit_<Node>`` methods of a listener class, with their node classes."""
    if listener not in _HOOK_NAMES:
        hooks = []
        for attribute in dir(listener):
            node_class = getattr(ast, attribute[len("visit_") :], None)
            if attribute.startswith("visit_") and isinstance(node_class, type):
                hooks.append((node_class, attribute))
        _HOOK_NAMES[listener] = tuple(hooks)
    return _HOOK_NAMES[listener]


class Checker(FastNodeVisitor):
    """Walks one file once, calling the hooks of ``listeners`` at each node.

    A listener is anything with ``visit_<Node>(node, checker)`` methods: the file
    rules, and the analyses project rules make of a module.
    """

    def __init__(self, source: SourceFile, listeners: Iterable[object]) -> None:
        self.source = source
        self.options = source.options
        self.names = _Names(source)
        self.names.collect_top_level(source.tree)
        self.scope_names: list[str] = []  # enclosing classes and functions, outermost first
        self._plugins: list[dict[str, Kind]] = [{}]
        self._jobs: list[set[str]] = [set()]
        self._hooks: dict[type[ast.AST], list[Callable[[Any, Checker], None]]] = {}
        for listener in listeners:
            for node_class, attribute in _hook_names(type(listener)):
                self._hooks.setdefault(node_class, []).append(getattr(listener, attribute))
        self._factories = [f.rpartition(".") for f in self.options.plugin_factories]

    def run(self) -> None:
        self.visit(self.source.tree)

    def visit(self, node: ast.AST) -> Any:
        hooks = self._hooks.get(node.__class__)
        if hooks:
            for hook in hooks:
                hook(node, self)
        return super().visit(node)

    # Questions hooks ask ------------------------------------------------------------

    def qualified_name(self, node: ast.expr) -> str | None:
        return self.names.qualified_name(node)

    def plugin_kind(self, node: ast.expr) -> Kind:
        if isinstance(node, ast.Name):
            if is_plugin_name(node.id):
                return PLUGIN
            for scope in reversed(self._plugins):
                if node.id in scope:
                    return scope[node.id]
            qualified = self.names.qualified_name(node)
            return ClassRef(qualified) if qualified else None
        if isinstance(node, ast.Attribute):
            if is_plugin_name(node.attr) and not self.names.is_module_attribute(node):
                return PLUGIN
            qualified = self.names.qualified_name(node)
            return ClassRef(qualified) if qualified else None
        if isinstance(node, ast.Subscript):
            return PLUGIN if is_plugins_container(node.value) else None
        if isinstance(node, ast.NamedExpr):
            return self.plugin_kind(node.value)
        if isinstance(node, ast.Call):
            return self._call_kind(node)
        return None

    def executed_plugin(self, node: ast.AST) -> Kind:
        """What ``node`` executes, if it is a reference to a plugin method.

        ``p.run`` (called, aliased or passed on), ``getattr(p, "run")`` and
        ``methodcaller("run")`` / ``attrgetter("run")`` (no receiver to clear them).
        """
        methods = self.options.plugin_methods
        if isinstance(node, ast.Attribute):
            if node.attr in methods and isinstance(node.ctx, ast.Load):
                return self.plugin_kind(node.value)
        elif isinstance(node, ast.Call):
            name = last_name(node.func)
            args = node.args
            if name == "getattr" and len(args) > 1 and _constant_string(args[1]) in methods:
                return self.plugin_kind(args[0])
            by_name = name in ("methodcaller", "attrgetter") and args
            if by_name and _constant_string(args[0]) in methods:
                return PLUGIN
        return None

    def is_job_model(self, node: ast.expr) -> bool:
        models = self.options.job_models
        if isinstance(node, ast.Name) and node.id in models and node.id not in self.names.imports:
            return True
        qualified = self.names.qualified_name(node)
        return qualified is not None and qualified.rsplit(".", 1)[-1] in models

    def is_job_query(self, node: ast.expr) -> bool:
        """``Job.objects``, ``session.query(Job)``, ``update(Job)`` and what is chained on them."""
        if isinstance(node, ast.Attribute):
            return node.attr == "objects" and self.is_job_model(node.value)
        if isinstance(node, ast.Call):
            if (
                last_name(node.func) in _SQL_STATEMENTS
                and node.args
                and self.is_job_model(node.args[0])
            ):
                return True
            if isinstance(node.func, ast.Attribute):
                return self.is_job_query(node.func.value)
            return False
        if isinstance(node, ast.Subscript):
            return self.is_job_query(node.value)
        return isinstance(node, ast.Name) and self._is_job_bound(node.id)

    def is_job(self, node: ast.expr) -> bool:
        """A Job row or a query of Jobs (the status of either is the Job's)."""
        if isinstance(node, ast.Name):
            return _is_job_name(node.id) or self._is_job_bound(node.id)
        if isinstance(node, ast.Attribute):
            return _is_job_name(node.attr) or self.is_job_query(node)
        if isinstance(node, ast.Call):
            return self.is_job_model(node.func) or self.is_job_query(node)
        if isinstance(node, ast.NamedExpr):
            return self.is_job(node.value)
        return self.is_job_query(node)

    # Plugin values ---------------------------------------------------------------------

    def _is_factory(self, func: ast.expr) -> bool:
        name = last_name(func)
        for receiver_pattern, dot, method_pattern in self._factories:
            if not fnmatch.fnmatchcase(name, method_pattern):
                continue
            if not dot:
                return True
            if isinstance(func, ast.Attribute):
                receiver = last_name(func.value) or ast.unparse(func.value)
                if fnmatch.fnmatchcase(receiver, receiver_pattern):
                    return True
        return False

    def _call_kind(self, node: ast.Call) -> Kind:
        func = node.func
        name = last_name(func)
        if name == "get_plugin" or self._is_factory(func):
            return PLUGIN
        if name == "load" and not node.args and not node.keywords:
            return PLUGIN  # entry_point.load(): a plugin class
        if isinstance(func, ast.Name) and func.id == "type" and len(node.args) == 1:
            return self.plugin_kind(node.args[0])  # type(plugin): its class
        # Calling a plugin class gives a plugin; calling a plugin's method gives who knows.
        if isinstance(func, ast.Call) or (isinstance(func, ast.Name) and self._bound_kind(func.id)):
            return self.plugin_kind(func)
        if isinstance(func, ast.Name | ast.Attribute):
            kind = self.plugin_kind(func)
            if isinstance(kind, ClassRef):
                return kind
            if kind is PLUGIN and name[:1].isupper():
                return PLUGIN
        return None

    def _bound_kind(self, name: str) -> Kind:
        for scope in reversed(self._plugins):
            if name in scope:
                return scope[name]
        return None

    def _bind_plugin(self, target: ast.expr, kind: Kind) -> None:
        if isinstance(target, ast.Name):
            if kind is None:
                self._plugins[-1].pop(target.id, None)
            else:
                self._plugins[-1][target.id] = kind
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:  # unknown element kinds: forget what we knew
                self._bind_plugin(element, None)

    def _bind_iteration(self, target: ast.expr, iterable: ast.expr) -> None:
        """``for plugin in registry.list_plugins()`` and iteration over a plugin mapping."""
        kind: Kind = None
        if isinstance(iterable, ast.Call):
            name = last_name(iterable.func)
            receiver = iterable.func.value if isinstance(iterable.func, ast.Attribute) else None
            over_mapping = receiver is not None and is_plugins_container(receiver)
            if name == "list_plugins" or (name == "values" and over_mapping):
                kind = PLUGIN
            elif (
                name == "items"
                and over_mapping
                and isinstance(target, ast.Tuple)
                and len(target.elts) == 2
            ):
                self._bind_plugin(target.elts[0], None)
                self._bind_plugin(target.elts[1], PLUGIN)
                self._bind_job(target, iterable)
                return
        self._bind_plugin(target, kind)
        self._bind_job(target, iterable)

    # Job values --------------------------------------------------------------------------

    def _is_job_bound(self, name: str) -> bool:
        return any(name in scope for scope in self._jobs)

    def _bind_job(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if self.is_job(value):
                self._jobs[-1].add(target.id)
            else:
                self._jobs[-1].discard(target.id)

    # Bindings ----------------------------------------------------------------------------

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if (
            isinstance(target, ast.Tuple | ast.List)
            and isinstance(value, ast.Tuple | ast.List)
            and len(target.elts) == len(value.elts)
        ):
            for element, item in zip(target.elts, value.elts, strict=True):
                self._bind(element, item)
            return
        self._bind_plugin(target, self.plugin_kind(value))
        self._bind_job(target, value)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.add_import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.names.add_import(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.add_class(node)  # classes inside functions count too
        self.scope_names.append(node.name)
        self.generic_visit(node)
        self.scope_names.pop()

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.scope_names.append(node.name if not isinstance(node, ast.Lambda) else "<lambda>")
        self._plugins.append({})
        self._jobs.append(set())
        self.generic_visit(node)
        self._jobs.pop()
        self._plugins.pop()
        self.scope_names.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self._bind(node.target, node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self._bind(node.target, node.value)

    def _visit_for(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._bind_iteration(node.target, node.iter)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)

    visit_For = visit_AsyncFor = _visit_for

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self._bind_iteration(node.target, node.iter)
        for condition in node.ifs:
            self.visit(condition)

    def _visit_comprehension_scope(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        self._plugins.append({})
        self._jobs.append(set())
        for generator in node.generators:
            self.visit(generator)
        for child in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            self.visit(child)
        self._jobs.pop()
        self._plugins.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = (
        _visit_comprehension_scope
    )

    def _visit_with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        for statement in node.body:
            self.visit(statement)

    visit_With = visit_AsyncWith = _visit_with


def _is_job_name(name: str) -> bool:
    return name == "job" or name.endswith("_job")
