"""Module structure of every package in the repository, read from the sources (nothing is imported).

- No import cycle among a package's own modules. Imports inside functions count (a cycle
  hidden in a function still ties the modules together and breaks when the import order
  changes); imports under ``if TYPE_CHECKING:`` do not (they never run).
- No plugin (nor the example plugin, tests included) imports a private ``ssl_core._x``
  module: plugins use the public API only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ("ssl_core", ROOT / "core" / "src" / "ssl_core")
PLUGINS = [
    (path.name, path)
    for src in [*sorted(ROOT.glob("packages/*/src")), ROOT / "examples" / "thirdparty-plugin" / "src"]
    for path in sorted(src.iterdir())
    if (path / "__init__.py").is_file()
]
PACKAGES = [CORE, *PLUGINS]


def modules(package: str, folder: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (``pkg`` is its ``__init__``)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those in the body of ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch runs
            continue
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _loaded(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, own: set[str]) -> set[str]:
    """The package's own modules an import statement executes, or reads a name from.

    A package that is an ancestor of ``module`` is already being imported; it counts only
    when a name (not a submodule) is taken from it (``from pkg import Thing``).
    """
    ancestors = _ancestors(module) | ({module} if is_package else set())
    if isinstance(node, ast.Import):
        loaded: set[str] = set()
        for alias in node.names:
            loaded |= ({alias.name} | _ancestors(alias.name)) - ancestors
        return loaded & own
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    submodules = {f"{source}.{alias.name}" for alias in node.names} & own
    takes_names = len(submodules) < len(node.names)
    loaded = submodules | ((({source} | _ancestors(source)) - ancestors) if source not in ancestors else set())
    if takes_names:
        loaded.add(source)
    return loaded & own


def import_graph(package: str, folder: Path) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports at run time (anywhere in its body)."""
    own = modules(package, folder)
    graph: dict[str, set[str]] = {}
    for name, path in own.items():
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            targets |= _loaded(name, path.name == "__init__.py", node, set(own))
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` (depth-first search, colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == 0:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if colour[start] == 0:
            found = visit(start)
            if found:
                return found
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (so a report names every tangle at once)."""
    remaining = {k: set(v) for k, v in graph.items()}
    cycles = []
    while (cycle := find_cycle(remaining)) is not None:
        cycles.append(cycle)
        remaining[cycle[-2]].discard(cycle[-1])  # break this edge, look for others
    return cycles


def test_the_helpers_find_cycles_in_functions_but_not_under_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from ._a import A\n")
    (pkg / "_a.py").write_text("def f():\n    from ._b import B\n")
    (pkg / "_b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import A\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import _b\nfrom pkg.sub import m\n")
    (pkg / "sub" / "m.py").write_text("from . import __name__ as n\n")
    graph = import_graph("pkg", pkg)
    assert graph == {
        "pkg": {"pkg._a"},
        "pkg._a": {"pkg._b"},
        "pkg._b": set(),
        "pkg.sub": {"pkg._b", "pkg.sub.m"},
        "pkg.sub.m": {"pkg.sub"},
    }
    assert find_cycle(graph) == ["pkg.sub", "pkg.sub.m", "pkg.sub"]
    (pkg / "_b.py").write_text("import pkg._a\n")
    assert all_cycles(import_graph("pkg", pkg)) == [["pkg._a", "pkg._b", "pkg._a"], ["pkg.sub", "pkg.sub.m", "pkg.sub"]]


@pytest.mark.parametrize(("package", "folder"), PACKAGES, ids=[name for name, _ in PACKAGES])
def test_no_import_cycle_among_own_modules(package: str, folder: Path) -> None:
    cycles = all_cycles(import_graph(package, folder))
    for cycle in cycles:
        print(f"{package}: import cycle {' -> '.join(cycle)}")
    assert not cycles, f"{package} has import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _private_ssl_core(name: str) -> bool:
    """``ssl_core._x`` and ``ssl_core.testing._y`` are private; dunders (``__version__``) are not."""
    parts = name.split(".")
    return parts[0] == "ssl_core" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


# What plugins ship, and their tests (third-party authors copy them, so they show public names only).
PLUGIN_TREES = [(package, "src", folder) for package, folder in PLUGINS] + [
    (package, "tests", folder.parent.parent / "tests")
    for package, folder in PLUGINS
    if (folder.parent.parent / "tests").is_dir()
]


@pytest.mark.parametrize(
    ("package", "part", "folder"), PLUGIN_TREES, ids=[f"{package}-{part}" for package, part, _ in PLUGIN_TREES]
)
def test_plugins_use_only_public_ssl_core(package: str, part: str, folder: Path) -> None:
    private = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            private += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if _private_ssl_core(n)]
    for line in private:
        print(line)
    assert not private, f"{package} ({part}) imports private parts of ssl_core: {private}"
