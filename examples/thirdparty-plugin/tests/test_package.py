"""Packaging contract of the example plugin, with the kit's defaults: the heavy modules are its requirements'."""

from __future__ import annotations

from ssl_core.testing import PluginPackageConformance


class TestPackage(PluginPackageConformance):
    distribution = "ssl-example-vicreg"
    import_name = "ssl_example_vicreg"
    plugin_name = "example"
