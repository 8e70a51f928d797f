"""A fast, read-only scan of installed distributions that declare ssl-core entry points.

``importlib.metadata`` parses every distribution's METADATA as an e-mail message;
with a few hundred packages installed that dominates ``ssl plugins``. This scanner
reads ``entry_points.txt`` first and parses headers only for the few distributions
whose entry points mention ``ssl_core.``. Same precedence as importlib: the first
distribution of a name on ``sys.path`` wins.

Example:
    >>> any(d.name == "ssl-core" for d in scan_distributions())
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["InstalledDistribution", "parse_entry_points", "scan_distributions"]


@dataclass
class InstalledDistribution:
    """What discovery needs from one distribution's metadata."""

    name: str
    version: str
    requires: list[str] = field(default_factory=list)
    entry_points: list[tuple[str, str, str]] = field(default_factory=list)
    """``(group, name, value)`` for groups starting with ``ssl_core.``."""


def parse_entry_points(text: str, prefix: str = "ssl_core.") -> list[tuple[str, str, str]]:
    """Parse ``entry_points.txt`` (INI style), keeping groups that start with ``prefix``.

    Example:
        >>> parse_entry_points("[ssl_core.plugins]\\nfoo = foo_mod\\n[console_scripts]\\nx = y:z\\n")
        [('ssl_core.plugins', 'foo', 'foo_mod')]
    """
    found: list[tuple[str, str, str]] = []
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            continue
        if group.startswith(prefix) and "=" in line:
            name, _, value = line.partition("=")
            found.append((group, name.strip(), value.strip()))
    return found


def _headers(path: str) -> tuple[str, str, list[str]]:
    name = version = ""
    requires: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                break  # headers end at the first blank line; the body is the long description
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "name":
                name = value
            elif key == "version":
                version = value
            elif key == "requires-dist":
                requires.append(value)
    return name, version, requires


def _egg_requires(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        if line.startswith("["):
            break  # extras sections follow; the base requirements come first
        if line.strip():
            out.append(line.strip())
    return out


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def scan_distributions(paths: Sequence[str] | None = None) -> Iterator[InstalledDistribution]:
    """Yield distributions on ``paths`` (default ``sys.path``) with ``ssl_core.*`` entry points."""
    seen: set[str] = set()
    for entry in sys.path if paths is None else paths:
        directory = entry or "."
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for filename in names:
            is_dist_info = filename.endswith(".dist-info")
            if not (is_dist_info or filename.endswith(".egg-info")):
                continue
            base = os.path.join(directory, filename)
            try:
                with open(os.path.join(base, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if "ssl_core." not in text:
                continue
            try:
                name, version, requires = _headers(os.path.join(base, "METADATA" if is_dist_info else "PKG-INFO"))
            except OSError:
                continue
            name = name or filename.split("-", 1)[0]
            key = _canonical(name)
            if key in seen:
                continue
            seen.add(key)
            if not is_dist_info:
                requires = _egg_requires(os.path.join(base, "requires.txt"))
            yield InstalledDistribution(name, version or "?", requires, parse_entry_points(text))
