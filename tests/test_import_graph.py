"""Arrows one way: the modules of mixkit/ and plugins/mixkit_plugins/ form no import cycle.

Every module is parsed with ``ast``; every ``import`` and ``from ... import`` counts, at
module level or inside a function or class (a function-level import is still an arrow,
and hiding a cycle in one is what this test forbids). Only ``if TYPE_CHECKING:`` blocks
are left out: they never run. An import of ``a.b.c`` is an arrow to ``a.b.c`` itself, not
to its parent packages (a package's ``__init__`` always runs before its submodules, so it
cannot be half-initialized by them). ``from pkg import name`` is an arrow to the submodule
``pkg.name`` when there is one, else to ``pkg``.

Plugins loaded by name at run time (the registry's ``DEFAULT_PLUGINS`` and entry points,
imported with ``importlib`` once the registry is fully initialized) are data, not arrows;
a literal ``importlib.import_module("mixkit...")`` of an in-tree module would be a hidden
arrow, and is refused by its own test below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mixkit": ROOT / "mixkit", "mixkit_plugins": ROOT / "plugins" / "mixkit_plugins"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages above."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node that can run, at any depth."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body only runs under a type checker
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: -(node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def import_graph(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported in-tree module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(module, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                if target in files and target != module:
                    line = graph[module].get(target, node.lineno)
                    graph[module][target] = min(line, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph has a few dozen nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        start = min(component)
        # breadth-first from start back to start inside the component: a shortest cycle
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in component and w not in parents:
                        parents[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while True:
            path.append(parents[path[-1]])
            if path[-1] == start:
                break
        cycles.append(path[::-1])
    return sorted(cycles)


def describe(cycle: list[str], graph: dict[str, dict[str, int]], files: dict[str, Path]) -> str:
    steps = [
        f"{a} ({files[a].relative_to(ROOT)}:{graph[a][b]}) imports {b}" for a, b in zip(cycle, cycle[1:])
    ]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "mixkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mixkit import c\n")
    (pkg / "b.py").write_text("def f():\n    from .a import thing\n")
    (pkg / "c.py").write_text("import mixkit.b\n")
    files = {"mixkit": pkg / "__init__.py", **{f"mixkit.{n}": pkg / f"{n}.py" for n in "abc"}}
    graph = import_graph(files)
    expected = {"mixkit": {"mixkit.a": 1}, "mixkit.a": {}, "mixkit.b": {"mixkit.a": 2}, "mixkit.c": {"mixkit.b": 1}}
    assert graph == expected
    assert find_cycles(graph) == []
    (pkg / "a.py").write_text("class A:\n    def m(self):\n        import mixkit.c\n")  # now a real arrow
    graph = import_graph(files)
    assert find_cycles(graph) == [["mixkit.a", "mixkit.c", "mixkit.b", "mixkit.a"]]


def test_mixkit_has_no_import_cycle():
    files = module_files()
    assert "mixkit.registry" in files and "mixkit_plugins.flow" in files
    graph = import_graph(files)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(c, graph, files) for c in cycles)


def test_no_in_tree_module_is_imported_by_a_literal_name():
    files = module_files()
    hidden = []
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                if str(arg.value).split(".")[0] in PACKAGES:
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}({arg.value!r})")
    assert not hidden, hidden
