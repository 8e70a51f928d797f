"""What discovery and the CLI say about name prefixes, duplicates, wrong kinds, closed pipes and --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

SOURCE = """
class Objective:
    def __init__(self, embed_dim=8):
        self.embed_dim = embed_dim
    def forward(self, encoder, views):
        return {}
def provider(root=None, **options):
    raise RuntimeError("not called by listing")
"""


def ssl(site: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "ssl_core", *args], capture_output=True, text=True, env=env, timeout=60, **kwargs
    )


@pytest.fixture()
def site(tmp_path: Path, fake_distribution: Callable[..., None]) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(
        site,
        "ssl-barlow",
        entry_points={
            "ssl_core.plugins": {"barlow": "ssl_barlow"},
            "ssl_core.objectives": {"barlow.barlow_twins": "ssl_barlow:Objective"},
        },
        module="ssl_barlow",
        module_source=SOURCE + "ORIGIN = 'barlow'\n",
    )
    fake_distribution(  # squats the real plugin's name, and names another component outside its prefix
        site,
        "ssl-squatter",
        entry_points={
            "ssl_core.plugins": {"squatter": "ssl_squatter"},
            "ssl_core.objectives": {
                "barlow.barlow_twins": "ssl_squatter:Objective",
                "squatter.own": "ssl_squatter:Objective",
                "shared.thing": "ssl_squatter:Objective",
            },
        },
        module="ssl_squatter",
        module_source=SOURCE,
    )
    for twin in ("a", "b"):  # two copies of one plugin under different distribution names
        fake_distribution(
            site,
            f"ssl-twin-{twin}",
            entry_points={
                "ssl_core.plugins": {"twin": f"ssl_twin_{twin}"},
                "ssl_core.datasets": {"twin.data": f"ssl_twin_{twin}:provider"},
            },
            module=f"ssl_twin_{twin}",
            module_source=SOURCE,
        )
    fake_distribution(
        site,
        "ssl-old",
        entry_points={"ssl_core.plugins": {"old": "ssl_old"}, "ssl_core.datasets": {"old.data": "ssl_old:provider"}},
        requires_core=">=0.1,<1",
        module="ssl_old",
        module_source=SOURCE,
    )
    return site


def _plugins(site: Path) -> dict[str, dict]:
    result = ssl(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_names_outside_the_prefix_warn_and_stay_usable(site: Path) -> None:
    plugins = _plugins(site)
    squatter = plugins["ssl-squatter"]
    outside = [w for w in squatter["warnings"] if "outside this plugin's prefix 'squatter.'" in w]
    assert len(outside) == 2 and any("'shared.thing'" in w for w in outside), squatter["warnings"]
    assert not any("squatter.own" in w for w in squatter["warnings"])
    assert plugins["ssl-core"]["warnings"] == [] and plugins["ssl-core"]["prefixes"] == ["core"]
    text = ssl(site, "plugins")
    assert "! warning: objective 'shared.thing' is outside this plugin's prefix" in text.stdout
    code = textwrap.dedent("""
        from ssl_core import Registry
        reg = Registry()
        assert callable(reg.get("objective", "shared.thing")) and callable(reg.get("objective", "squatter.own"))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(site)})  # fmt: skip
    assert out.stdout.strip() == "ok", out.stderr


def test_the_owner_of_a_prefix_wins_a_collision(site: Path) -> None:
    plugins = _plugins(site)
    assert plugins["ssl-barlow"]["status"] == "ok"
    assert any("ssl-squatter also registers" in w for w in plugins["ssl-barlow"]["warnings"])
    assert plugins["ssl-squatter"]["status"] == "duplicate"
    assert "ssl-barlow, which owns the 'barlow.' prefix" in plugins["ssl-squatter"]["problems"][0]
    code = textwrap.dedent("""
        import sys
        from ssl_core import Registry
        obj = Registry().get("objective", "barlow.barlow_twins")
        print(obj.__module__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(site)})  # fmt: skip
    assert out.stdout.strip() == "ssl_barlow", out.stderr


def test_two_owners_of_one_prefix_are_both_disabled_with_an_uninstall_hint(site: Path) -> None:
    plugins = _plugins(site)
    for twin, other in (("ssl-twin-a", "ssl-twin-b"), ("ssl-twin-b", "ssl-twin-a")):
        assert plugins[twin]["status"] == "duplicate"
        assert other in plugins[twin]["problems"][0] and "uninstall" in plugins[twin]["problems"][0]


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("twin.data", ("is duplicate", "pip uninstall` all but one")),
        ("old.data", ("is incompatible", "requires ssl-core<1,>=0.1")),
    ],
)
def test_info_says_why_an_installed_component_is_unavailable(site: Path, name: str, needles: tuple[str, ...]) -> None:
    result = ssl(site, "info", name)
    assert result.returncode == 2
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "pip install` the plugin" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_component_of_another_kind_says_what_it_is(tmp_path: Path) -> None:
    from ssl_core import ComponentNotFoundError, default_registry

    with pytest.raises(ComponentNotFoundError, match=r"'core\.noise' is a views component, not an objective"):
        default_registry().get("objective", "core.noise")
    with pytest.raises(ComponentNotFoundError, match=r"'core\.knn' is an evaluator component, not an encoder"):
        default_registry().get("encoder", "core.knn")
    result = ssl(tmp_path, "info", "core.noise", "--kind", "objective")
    assert result.returncode == 2 and "'core.noise' is a views component, not an objective" in result.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    for args in (("plugins",), ("info", "core.mlp")):
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "ssl_core", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line is written (`ssl plugins | head -0`)
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, stderr
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_debug_works_after_the_subcommand(tmp_path: Path) -> None:
    quiet = ssl(tmp_path, "info", "core.nosuch")
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    for args in (("info", "core.nosuch", "--debug"), ("--debug", "info", "core.nosuch")):
        loud = ssl(tmp_path, *args)
        assert loud.returncode == 1 and "Traceback" in loud.stderr and "ComponentNotFoundError" in loud.stderr
