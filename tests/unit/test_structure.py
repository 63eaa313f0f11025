"""The package's shape: no import cycles between codeclab's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import codeclab

PACKAGE = Path(codeclab.__file__).parent


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at any depth of the file: deferred imports count too)."""
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}  # fmt: skip
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            if group:
                found.append(group | {node})

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_package_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_check_finds_a_circle_like_the_old_spec_and_sweep(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "spec.py").write_text("def validate():\n    from pkg.sweep import expand\n")
    (package / "sweep.py").write_text("from pkg.spec import validate\n")
    (package / "other.py").write_text("import pkg.spec\n")
    assert cycles(import_graph(package)) == [{"pkg.spec", "pkg.sweep"}]
