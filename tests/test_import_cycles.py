"""The package's imports form no cycle, the imports inside functions included.

A cycle among module-level imports makes import order matter and breaks ``import fluidopt.x``
for some ``x`` depending on what was imported first; a cycle closed by an import inside a
function hides the same knot from that check.  Only ``if TYPE_CHECKING:`` blocks are left out
(they never run).  The command line's lazy imports stay lazy: they point down, never back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fluidopt

PACKAGE_ROOT = Path(fluidopt.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif hasattr(child, "body") and isinstance(getattr(child, "body", None), list):
                    visit([c for c in child.body if isinstance(c, ast.stmt)])  # e.g. except handlers

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    sources = {p: _module_name(p) for p in PACKAGE_ROOT.rglob("*.py")}
    modules = set(sources.values())
    graph: dict[str, set[str]] = {}
    for path, name in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _is_package_reexport(edge_from: str, edge_to: str) -> bool:
    """A package's ``__init__`` importing its own submodule is not a cycle hazard."""
    return edge_to.startswith(edge_from + ".")


def test_no_import_cycles_including_function_local_imports() -> None:
    graph = _graph()
    # A submodule importing names from its parent package's ``__init__`` while that
    # ``__init__`` imports the submodule is the usual re-export shape; keep only the
    # parent -> child direction of such pairs.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not (module.startswith(t + ".") and _is_package_reexport(t, module))}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_imports_are_counted() -> None:
    tree = ast.parse("def f():\n    from fluidopt.b import x\nif TYPE_CHECKING:\n    import fluidopt.c\n")
    found = _imports(tree, "fluidopt.a", False)
    assert "fluidopt.b" in found and "fluidopt.c" not in found
