"""Version of ssl-core; the major number is the plugin-API version."""

from typing import Final

__all__ = ["PLUGIN_API_VERSION", "__version__"]

__version__: Final = "1.0.0"
PLUGIN_API_VERSION: Final = int(__version__.split(".")[0])
