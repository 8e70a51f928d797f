"""Shared fixtures of ssl-core's tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def make_distribution(
    site: Path,
    name: str,
    *,
    entry_points: dict[str, dict[str, str]],
    requires_core: str | None = ">=1.0,<2",
    module: str | None = None,
    module_source: str = "",
    version: str = "0.1.0",
) -> None:
    """Write a minimal installed distribution (dist-info + module) into ``site``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_core is not None:
        meta.append(f"Requires-Dist: ssl-core{requires_core}")
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module is not None:
        (site / f"{module}.py").write_text(textwrap.dedent(module_source))


@pytest.fixture()
def fake_distribution() -> Callable[..., None]:
    """``make_distribution(site, name, entry_points=..., ...)``: an installed distribution on disk."""
    return make_distribution
