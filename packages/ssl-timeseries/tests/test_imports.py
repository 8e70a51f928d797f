"""Module structure of ssl_timeseries: no import cycles between its modules, no private ssl_core modules.

Function-level imports count: a cycle hidden in a function still ties the modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ssl_timeseries

PACKAGE = Path(ssl_timeseries.__file__).resolve().parent
NAME = "ssl_timeseries"


def imports() -> dict[str, set[str]]:
    """Each module's imports of sibling modules (anywhere in its body), by module stem."""
    modules = {f.stem for f in PACKAGE.glob("*.py")}
    edges: dict[str, set[str]] = {}
    for stem in modules:
        targets: set[str] = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{stem}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == NAME:
                parts = node.module.split(".")
                targets |= {parts[1]} if len(parts) > 1 else {"__init__"}
            elif isinstance(node, ast.Import):
                targets |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{NAME}.")}
        edges[stem] = (targets & modules) - {stem}
    return edges


def test_no_import_cycles_between_modules() -> None:
    edges = imports()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges[node])
        return False

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a))
    assert not cycles, f"import cycles in {NAME}: {cycles}"


def is_private(name: str) -> bool:
    """``ssl_core._x`` or ``ssl_core._x.y`` (dunders such as ``__version__`` are public)."""
    parts = name.split(".")
    return parts[0] == "ssl_core" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def test_no_private_ssl_core_modules() -> None:
    private = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module == "ssl_core":
                names += [f"ssl_core.{a.name}" for a in node.names]
            private += [f"{path.name}:{getattr(node, 'lineno', '?')} {n}" for n in names if is_private(n)]
    assert not private, f"{NAME} imports private ssl_core modules: {private}"
