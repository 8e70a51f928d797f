"""Module structure checks, read from the sources (nothing is imported): import cycles, private ssl-core imports.

Imports inside functions count (a cycle hidden in a function still ties the modules
together and breaks when the import order changes); imports under ``if TYPE_CHECKING:``
do not (they never run).

Example:
    >>> import_cycles("ssl_core")
    []
    >>> private_core_imports("ssl_core.testing")  # the kit itself is part of ssl-core
    []
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

__all__ = ["import_cycles", "import_graph", "private_core_imports"]


def package_folder(package: str) -> Path:
    """The source folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not an installed package")
    return Path(next(iter(spec.submodule_search_locations)))


def _modules(package: str, folder: Path) -> dict[str, Path]:
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


def import_graph(package: str, folder: Path | None = None) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports at run time (anywhere in its body)."""
    own = _modules(package, folder or package_folder(package))
    graph: dict[str, set[str]] = {}
    for name, path in own.items():
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            targets |= _loaded(name, path.name == "__init__.py", node, set(own))
        graph[name] = targets - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
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


def _all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (so a report names every tangle at once)."""
    remaining = {k: set(v) for k, v in graph.items()}
    cycles = []
    while (cycle := _find_cycle(remaining)) is not None:
        cycles.append(cycle)
        remaining[cycle[-2]].discard(cycle[-1])  # break this edge, look for others
    return cycles


def import_cycles(package: str, folder: Path | None = None) -> list[list[str]]:
    """One import cycle (``[a, b, ..., a]``) per tangle of ``package``'s own modules; ``[]`` when there is none."""
    return _all_cycles(import_graph(package, folder))


def _private_ssl_core(name: str) -> bool:
    """``ssl_core._x`` and ``ssl_core.testing._y`` are private; dunders (``__version__``) are not."""
    parts = name.split(".")
    return parts[0] == "ssl_core" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def private_core_imports(package: str, folder: Path | None = None) -> list[str]:
    """``file:line name`` for every import of a private ``ssl_core._x`` module in ``package`` (or ``folder``)."""
    root = folder or package_folder(package)
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {n}" for n in names if _private_ssl_core(n)]
    return found
