"""Discovery reads metadata only and isolates broken, incompatible and duplicate plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "ssl_core", *args], capture_output=True, text=True, env=env, timeout=60
    )


GOOD_SOURCE = """
from ssl_core._protocols import DatasetSplits
def provider(root=None, **options):
    raise RuntimeError("not called by listing")
"""


@pytest.fixture()
def plugin_site(tmp_path: Path, fake_distribution: Callable[..., None]) -> Path:
    make_distribution = fake_distribution
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(
        site,
        "ssl-good",
        entry_points={
            "ssl_core.plugins": {"good": "ssl_good"},
            "ssl_core.datasets": {"good.data": "ssl_good:provider"},
        },
        module="ssl_good",
        module_source=GOOD_SOURCE,
    )
    make_distribution(
        site,
        "ssl-old",
        entry_points={"ssl_core.datasets": {"old.data": "ssl_old:provider"}},
        requires_core=">=0.1,<1",
        module="ssl_old",
        module_source=GOOD_SOURCE,
    )
    make_distribution(
        site,
        "ssl-broken",
        entry_points={"ssl_core.datasets": {"broken.data": "ssl_broken:provider"}},
        module="ssl_broken",
        module_source="raise ImportError('needs libfoo 3')\n",
    )
    make_distribution(site, "ssl-ghost", entry_points={"ssl_core.datasets": {"ghost.data": "ssl_ghost_missing:x"}})
    make_distribution(
        site,
        "ssl-twin-a",
        entry_points={"ssl_core.datasets": {"twin.data": "ssl_twin_a:provider", "twin.other": "ssl_twin_a:provider"}},
        module="ssl_twin_a",
        module_source=GOOD_SOURCE,
    )
    make_distribution(
        site,
        "ssl-twin-b",
        entry_points={"ssl_core.datasets": {"twin.data": "ssl_twin_b:provider"}},
        module="ssl_twin_b",
        module_source=GOOD_SOURCE,
    )
    return site


def _statuses(stdout: str) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(stdout)["plugins"]}


def test_listing_reports_each_problem_per_plugin(plugin_site: Path) -> None:
    result = run_cli(plugin_site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = _statuses(result.stdout)
    assert plugins["ssl-core"]["status"] == "ok"
    assert plugins["ssl-good"]["status"] == "ok"
    assert plugins["ssl-old"]["status"] == "incompatible"
    assert "requires ssl-core<1,>=0.1" in plugins["ssl-old"]["problems"][0]
    assert plugins["ssl-ghost"]["status"] == "error"
    assert "ssl_ghost_missing" in plugins["ssl-ghost"]["problems"][0]
    for twin, other in (("ssl-twin-a", "ssl-twin-b"), ("ssl-twin-b", "ssl-twin-a")):
        assert plugins[twin]["status"] == "duplicate"
        assert other in plugins[twin]["problems"][0]
    # listing does not import: the broken module's ImportError is only found by --check
    assert plugins["ssl-broken"]["status"] == "ok"


def test_check_imports_and_reports_the_exception(plugin_site: Path) -> None:
    result = run_cli(plugin_site, "plugins", "--json", "--check")
    plugins = _statuses(result.stdout)
    assert plugins["ssl-broken"]["status"] == "error"
    assert "needs libfoo 3" in plugins["ssl-broken"]["problems"][0]
    assert plugins["ssl-good"]["status"] == "ok"


def test_strict_turns_problems_into_failure(plugin_site: Path, tmp_path: Path) -> None:
    assert run_cli(plugin_site, "plugins", "--strict").returncode == 1
    clean = tmp_path / "clean"
    clean.mkdir()
    assert run_cli(clean, "plugins", "--strict").returncode == 0


def test_listing_imports_neither_torch_nor_plugins(plugin_site: Path) -> None:
    code = (
        "import sys, io, contextlib\n"
        "from ssl_core._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plugins', '--json'])\n"
        "bad = [m for m in ('torch', 'ssl_good', 'ssl_twin_a', 'ssl_broken', 'numpy') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_registry_isolates_failures_and_suggests_names(plugin_site: Path) -> None:
    code = textwrap.dedent("""
        from ssl_core import Registry, PluginLoadError, ComponentNotFoundError
        reg = Registry()
        assert callable(reg.get("dataset", "good.data"))
        try:
            reg.get("dataset", "broken.data")
        except PluginLoadError as exc:
            assert exc.plugin == "ssl-broken" and "needs libfoo 3" in str(exc), exc
        else:
            raise AssertionError("no error")
        for name, needle in (("good.dta", "good.data"), ("old.data", "incompatible"), ("twin.data", "duplicate")):
            try:
                reg.get("dataset", name)
            except ComponentNotFoundError as exc:
                assert needle in str(exc), str(exc)
            else:
                raise AssertionError(name)
        assert callable(reg.get("dataset", "twin.other"))  # the rest of a plugin with a duplicate still loads
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_manual_registration_checks_shape() -> None:
    from ssl_core import PluginLoadError, Registry

    reg = Registry(discover=False)

    class NoForward:
        pass

    with pytest.raises(PluginLoadError, match="has no forward"):
        reg.register("encoder", "x.bad", NoForward)

    class WrongObjective:
        def forward(self) -> None: ...

    with pytest.raises(PluginLoadError, match="encoder, views"):
        reg.register("objective", "x.wrong", WrongObjective)
    with pytest.raises(PluginLoadError, match="root"):
        reg.register("dataset", "x.noroot", lambda path: None)
    reg.register("dataset", "x.ok", lambda root=None: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("dataset", "x.ok", lambda root=None: None)
