"""The layout's rules, checked on the source: src/sweep uses src/train, never the reverse; no
import circles between modules; no module over ~300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The src modules a file imports (function-level imports too, unless top_level_only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name in MODULES}


def test_train_never_imports_sweep():
    wrong = {
        name: sorted(i for i in imports(path) if i.startswith("src.sweep"))
        for name, path in MODULES.items()
        if name.startswith("src.train")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_import_circles():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}
    done, stack = set(), []

    def visit(name):
        if name in stack:
            pytest.fail("import circle: " + " -> ".join([*stack[stack.index(name) :], name]))
        if name in done:
            return
        stack.append(name)
        for dep in sorted(graph[name]):
            # a package's __init__ importing its own submodules is not a circle through them
            if not dep.startswith(name + "."):
                visit(dep)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_module_is_over_300_lines():
    long = {
        name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
