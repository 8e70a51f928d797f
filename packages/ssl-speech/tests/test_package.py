"""Packaging contract of ssl-speech: discovery metadata, core compatibility, a light import."""

from __future__ import annotations

from ssl_core.testing import PluginPackageConformance


class TestPackage(PluginPackageConformance):
    distribution = "ssl-speech"
    import_name = "ssl_speech"
    plugin_name = "speech"
    heavy_modules = ("torchaudio", "soundfile")
