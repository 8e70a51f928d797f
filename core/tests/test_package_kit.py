"""PluginPackageConformance's default heavy modules: the distribution's own requirements."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.testing import PluginPackageConformance


def _dist(site: Path, name: str, requires: list[str], module: str, source: str, plugin: str | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0.0", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "top_level.txt").write_text(module + "\n")
    if plugin:
        (info / "entry_points.txt").write_text(f"[ssl_core.plugins]\n{plugin} = {module}\n")
    (site / f"{module}.py").write_text(source)


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "fake-heavy", [], "fake_heavy", "")
    _dist(site, "fake-light", [], "fake_light", "")
    requires = ["ssl-core>=1.0,<2", "fake-heavy>=1", "fake-light>=1", 'fake-test>=1; extra == "test"']
    _dist(site, "ssl-eager", requires, "ssl_eager", "import fake_light\nimport fake_heavy\n", plugin="eager")
    _dist(site, "ssl-lazy", requires, "ssl_lazy", "def f():\n    import fake_heavy\n", plugin="lazy")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the probe runs in a subprocess
    return site


def test_the_default_covers_the_declared_requirements(site: Path) -> None:
    class Eager(PluginPackageConformance):
        distribution, import_name, plugin_name = "ssl-eager", "ssl_eager", "eager"

    class Lazy(PluginPackageConformance):
        distribution, import_name, plugin_name = "ssl-lazy", "ssl_lazy", "lazy"

    assert Eager()._heavy_modules() == ("fake_heavy", "fake_light")  # extras and ssl-core left out
    Lazy().test_import_does_not_load_heavy_library()
    with pytest.raises(AssertionError, match="fake_heavy', 'fake_light"):
        Eager().test_import_does_not_load_heavy_library()


def test_an_explicit_list_replaces_the_default(site: Path) -> None:
    class OnlyHeavyMatters(PluginPackageConformance):
        distribution, import_name, plugin_name = "ssl-eager", "ssl_eager", "eager"
        heavy_modules = ("not_imported",)

    OnlyHeavyMatters().test_import_does_not_load_heavy_library()
