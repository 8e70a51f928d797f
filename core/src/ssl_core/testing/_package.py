"""Conformance of a plugin's distribution: entry point, core range, no pins, a light import, a clean module graph."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import metadata
from typing import ClassVar

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ._imports import import_cycles, private_core_imports

__all__ = ["PluginPackageConformance"]

PLUGIN_GROUP = "ssl_core.plugins"
EXPECTED_IMPORTS: tuple[str, ...] = ("ssl-core", "torch", "numpy")
"""Requirements a plugin may import when it is imported: ssl-core and the torch stack it is built on."""


class PluginPackageConformance:
    """Checks the packaging contract of an installed plugin distribution.

    Example:
        >>> class TestPackage(PluginPackageConformance):  # doctest: +SKIP
        ...     distribution = "ssl-speech"
        ...     import_name = "ssl_speech"
        ...     plugin_name = "speech"
        ...     heavy_modules = ("torchaudio", "soundfile")

    Without ``heavy_modules`` the check covers the import names of every requirement the
    distribution declares (extras aside), except :data:`EXPECTED_IMPORTS`: a plugin that
    depends on torchaudio must not import it when its package is imported.
    """

    distribution: ClassVar[str]
    import_name: ClassVar[str]
    plugin_name: ClassVar[str]
    heavy_modules: ClassVar[tuple[str, ...] | None] = None
    """Libraries that importing the plugin (as discovery may) must not import; ``None``: its requirements'."""

    def _requirements(self) -> list[Requirement]:
        return [Requirement(line) for line in metadata.requires(self.distribution) or []]

    def _heavy_modules(self) -> tuple[str, ...]:
        if self.heavy_modules is not None:
            return tuple(self.heavy_modules)
        expected = {canonicalize_name(name) for name in EXPECTED_IMPORTS}
        modules: set[str] = set()
        for req in self._requirements():
            skipped = req.marker is not None and not req.marker.evaluate({"extra": ""})  # extras aside
            if skipped or canonicalize_name(req.name) in expected:
                continue
            modules |= set(_import_names(req.name))
        return tuple(sorted(modules))

    def test_metadata_declares_plugin_entry_point(self) -> None:
        entry_points = metadata.distribution(self.distribution).entry_points
        declared = {ep.name: ep.value for ep in entry_points if ep.group == PLUGIN_GROUP}
        assert declared == {self.plugin_name: self.import_name}

    def test_core_requirement_is_a_range_that_admits_installed_core(self) -> None:
        core = [req for req in self._requirements() if canonicalize_name(req.name) == "ssl-core"]
        assert len(core) == 1, f"expected one ssl-core requirement, got {core}"
        operators = {spec.operator for spec in core[0].specifier}
        assert operators & {">=", ">", "~="}, f"ssl-core requirement has no lower bound: {core[0]}"
        assert operators & {"<", "<=", "~="}, f"ssl-core requirement has no upper bound: {core[0]}"
        installed_core = metadata.version("ssl-core")
        assert core[0].specifier.contains(installed_core, prereleases=True), (
            f"{core[0]} does not admit the installed ssl-core {installed_core}"
        )

    def test_no_dependency_is_an_exact_pin(self) -> None:
        pinned = [str(req) for req in self._requirements() if any(s.operator in {"==", "==="} for s in req.specifier)]
        assert not pinned, f"dependencies must be ranges, not pins: {pinned}"

    def test_version_matches_metadata(self) -> None:
        module = importlib.import_module(self.import_name)
        assert module.__version__ == metadata.version(self.distribution)
        assert "__version__" in module.__all__

    def test_no_import_cycle_among_its_modules(self) -> None:
        cycles = import_cycles(self.import_name)
        assert not cycles, f"{self.import_name} has import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

    def test_imports_only_public_ssl_core(self) -> None:
        private = private_core_imports(self.import_name)
        assert not private, f"{self.import_name} imports private parts of ssl_core (use ssl_core's API): {private}"

    def test_import_does_not_load_heavy_library(self) -> None:
        heavy = self._heavy_modules()
        probe = (
            f"import sys, {self.import_name}; "
            f"loaded = [name for name in {heavy!r} if name in sys.modules]; "
            "print(loaded); sys.exit(1 if loaded else 0)"
        )
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
        assert result.returncode == 0, (
            f"importing {self.import_name} loaded heavy modules: {result.stdout}{result.stderr}"
        )


def _import_names(distribution: str) -> list[str]:
    """The top-level modules an installed distribution provides (none when it is not installed)."""
    key = canonicalize_name(distribution)
    return sorted(
        module
        for module, owners in metadata.packages_distributions().items()
        if not module.startswith("_") and key in {canonicalize_name(owner) for owner in owners}
    )
