"""The project's import rules, read from the source with ``ast``.

- No import cycle between the project's modules. Imports under ``if TYPE_CHECKING:``
  do not count (they never run); imports inside functions do (a lazy import that
  closes a cycle is still a cycle of responsibilities).
- The layers: ``plugins`` (the plugin contract, registry, runtime, metrics) and
  ``governance_scanner`` (a standalone tool) import nothing of ``execution`` or
  ``api``; ``api`` (the shared HTTP layer) imports nothing of ``execution``.
- Only the task-engine adapter (``execution.task_engine.django_tasks_db``) imports
  ``django_tasks_db``. The settings name the adapter by a string (``TASK_ENGINE``), so
  the cycle services -> adapter -> tasks -> services is one this test cannot see.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "execution", "plugins", "governance_scanner", "project")
FORBIDDEN = {
    "plugins": ("execution", "api"),
    "governance_scanner": ("execution", "api"),
    "api": ("execution",),
}
TASK_ENGINE_ADAPTER = "execution.task_engine.django_tasks_db"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name ``name``'s module imports (``from a import b`` gives a and a.b)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {imported for imported in imported_names(name, path) if imported in modules} - {name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> ... -> a, or None (an iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                pending.pop()
                done.add(path.pop())
            elif following in path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                pending.append(iter(sorted(graph.get(following, ()))))
    return None


def test_the_graph_sees_the_project():
    graph = project_graph()
    assert "execution.models" in graph["execution.selectors"]
    assert "execution.audit.events" in graph["execution.models"]  # absolute imports
    assert "governance_scanner.rules.base" in graph["governance_scanner.rules"]


def test_relative_and_type_checking_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    import never.runs\n"
        "def lazy():\n"
        "    import inside.function\n"
    )
    found = imported_names("pkg.sub.mod", source)
    assert {"pkg.sub.sibling", "pkg.other", "pkg.other.thing", "inside.function"} <= found
    assert "never.runs" not in found


def test_no_import_cycle_between_project_modules():
    cycle = find_cycle(project_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_lower_layer_imports_nothing_above_it(layer):
    above = FORBIDDEN[layer]
    wrong = sorted(
        f"{name} imports {imported}"
        for name, path in project_modules().items()
        if name == layer or name.startswith(layer + ".")
        for imported in imported_names(name, path)
        if imported.split(".")[0] in above
    )
    assert not wrong, wrong


def test_only_the_task_engine_adapter_imports_django_tasks_db():
    wrong = sorted(
        name
        for name, path in project_modules().items()
        if not (name == TASK_ENGINE_ADAPTER or name.startswith(TASK_ENGINE_ADAPTER + "."))
        and any(
            imported.split(".")[0] == "django_tasks_db" for imported in imported_names(name, path)
        )
    )
    assert not wrong, wrong


def test_a_plugin_host_loads_no_django_and_nothing_of_the_servers():
    """What a host imports before its plugin: the runtime, the contract, the sandbox only."""
    probe = (
        "import sys; import plugins.runtime.isolation.host, plugins.runtime.sandbox; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "plugins" in loaded
    assert not {"django", "rest_framework", "execution", "api", "project"} & set(loaded)
