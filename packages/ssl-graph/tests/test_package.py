"""Packaging contract of ssl-graph: discovery metadata, core compatibility, a light import."""

from __future__ import annotations

from ssl_core.testing import PluginPackageConformance


class TestPackage(PluginPackageConformance):
    distribution = "ssl-graph"
    import_name = "ssl_graph"
    plugin_name = "graph"
    heavy_modules = ("torch_geometric",)
