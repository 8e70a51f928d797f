"""Speech plugin for ssl-core: self-supervised pretraining for speech and audio.

The plugin is discovered through the ``ssl_core.plugins`` entry point ``speech``.
Its components are declared as entry points and loaded lazily by ssl-core, so importing
this package stays light: it does not import ``torchaudio``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("ssl-speech")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
