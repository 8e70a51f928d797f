"""Graph plugin for ssl-core: self-supervised pretraining for graphs.

The plugin is discovered through the ``ssl_core.plugins`` entry point ``graph``.
Its components are declared as entry points and loaded lazily by ssl-core, so importing
this package stays light: it does not import ``torch_geometric``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("ssl-graph")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
