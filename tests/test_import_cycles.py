"""Module structure of every package in the repository, read from the sources (nothing is imported).

The checks live in the conformance kit (``ssl_core.testing.import_cycles`` and
``private_core_imports``; every plugin's ``PluginPackageConformance`` runs them on the
installed package). Here they run over the source trees of ssl-core, the four plugins,
the example plugin and the plugins' tests, which third-party authors copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.testing import import_cycles, import_graph, private_core_imports

ROOT = Path(__file__).resolve().parent.parent
CORE = ("ssl_core", ROOT / "core" / "src" / "ssl_core")
PLUGINS = [
    (path.name, path)
    for src in [*sorted(ROOT.glob("packages/*/src")), ROOT / "examples" / "thirdparty-plugin" / "src"]
    for path in sorted(src.iterdir())
    if (path / "__init__.py").is_file()
]
PACKAGES = [CORE, *PLUGINS]


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
    assert import_cycles("pkg", pkg) == [["pkg.sub", "pkg.sub.m", "pkg.sub"]]
    (pkg / "_b.py").write_text("import pkg._a\n")
    assert import_cycles("pkg", pkg) == [["pkg._a", "pkg._b", "pkg._a"], ["pkg.sub", "pkg.sub.m", "pkg.sub"]]


@pytest.mark.parametrize(("package", "folder"), PACKAGES, ids=[name for name, _ in PACKAGES])
def test_no_import_cycle_among_own_modules(package: str, folder: Path) -> None:
    cycles = import_cycles(package, folder)
    for cycle in cycles:
        print(f"{package}: import cycle {' -> '.join(cycle)}")
    assert not cycles, f"{package} has import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


PLUGIN_TREES = [(package, "src", folder) for package, folder in PLUGINS] + [
    (package, "tests", folder.parent.parent / "tests")
    for package, folder in PLUGINS
    if (folder.parent.parent / "tests").is_dir()
]


@pytest.mark.parametrize(
    ("package", "part", "folder"), PLUGIN_TREES, ids=[f"{package}-{part}" for package, part, _ in PLUGIN_TREES]
)
def test_plugins_use_only_public_ssl_core(package: str, part: str, folder: Path) -> None:
    private = private_core_imports(package, folder)
    assert not private, f"{package} ({part}) imports private parts of ssl_core: {private}"
