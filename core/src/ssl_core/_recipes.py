"""Named presets of the core: a full pipeline config per recipe."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["quickstart"]


def quickstart() -> dict[str, Any]:
    """SimCLR on scikit-learn digits with the MLP encoder; the README's main job.

    Example:
        >>> quickstart()["objective"]["name"]
        'core.simclr'
    """
    text = (resources.files("ssl_core") / "pipelines" / "quickstart.toml").read_text()
    return tomllib.loads(text)
