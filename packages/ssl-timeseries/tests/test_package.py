"""Packaging contract of ssl-timeseries: discovery metadata, core compatibility, a light import."""

from __future__ import annotations

from ssl_core.testing import PluginPackageConformance


class TestPackage(PluginPackageConformance):
    distribution = "ssl-timeseries"
    import_name = "ssl_timeseries"
    plugin_name = "timeseries"
    heavy_modules = ("tsai", "aeon")
