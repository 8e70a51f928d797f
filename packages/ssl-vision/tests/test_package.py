"""Packaging contract of ssl-vision: discovery metadata, core compatibility, a light import."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import ssl_vision

DISTRIBUTION = "ssl-vision"
IMPORT_NAME = "ssl_vision"
PLUGIN_NAME = "vision"
HEAVY_MODULES: tuple[str, ...] = ("torchvision", "timm")
PLUGIN_GROUP = "ssl_core.plugins"


def _requirements() -> list[Requirement]:
    return [Requirement(line) for line in metadata.requires(DISTRIBUTION) or []]


def test_metadata_declares_plugin_entry_point() -> None:
    entry_points = metadata.distribution(DISTRIBUTION).entry_points
    declared = {ep.name: ep.value for ep in entry_points if ep.group == PLUGIN_GROUP}
    assert declared == {PLUGIN_NAME: IMPORT_NAME}


def test_core_requirement_is_a_range_that_admits_installed_core() -> None:
    core = [req for req in _requirements() if canonicalize_name(req.name) == "ssl-core"]
    assert len(core) == 1, f"expected one ssl-core requirement, got {core}"
    operators = {spec.operator for spec in core[0].specifier}
    assert operators & {">=", ">", "~="}, f"ssl-core requirement has no lower bound: {core[0]}"
    assert operators & {"<", "<=", "~="}, f"ssl-core requirement has no upper bound: {core[0]}"
    installed_core = metadata.version("ssl-core")
    assert core[0].specifier.contains(installed_core, prereleases=True), (
        f"{core[0]} does not admit the installed ssl-core {installed_core}"
    )


def test_no_dependency_is_an_exact_pin() -> None:
    pinned = [str(req) for req in _requirements() if any(s.operator in {"==", "==="} for s in req.specifier)]
    assert not pinned, f"dependencies must be ranges, not pins: {pinned}"


def test_version_matches_metadata() -> None:
    assert ssl_vision.__version__ == metadata.version(DISTRIBUTION)
    assert "__version__" in ssl_vision.__all__


def test_import_does_not_load_heavy_library() -> None:
    probe = (
        f"import sys, {IMPORT_NAME}; "
        f"loaded = [name for name in {HEAVY_MODULES!r} if name in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"importing {IMPORT_NAME} loaded heavy modules: {result.stdout}{result.stderr}"
