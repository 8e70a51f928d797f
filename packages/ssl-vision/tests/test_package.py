"""Packaging contract of ssl-vision: discovery metadata, core compatibility, a light import."""

from __future__ import annotations

from ssl_core.testing import PluginPackageConformance


class TestPackage(PluginPackageConformance):
    distribution = "ssl-vision"
    import_name = "ssl_vision"
    plugin_name = "vision"
    heavy_modules = ("torchvision", "timm")
