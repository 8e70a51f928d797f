"""The example third-party plugin, installed for real, seen by discovery and run in a pipeline.

The plugin is pip-installed (no dependencies, no build isolation, no index) into a
temporary target that subprocesses put on ``PYTHONPATH``, next to the dev venv's
ssl-core. A second, broken distribution (a dist-info folder plus a module that
raises ImportError) checks that one bad plugin is reported without hurting the others.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "examples" / "thirdparty-plugin"
PLUGIN = "ssl-example-vicreg"
BROKEN = "ssl-broken-plugin"


def _python(args: list[str], *paths: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _plugins(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["plugins"]}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip into a fresh folder (built from a copy, so the repo stays clean)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not importable in this environment; --no-build-isolation needs it to build")
    work = tmp_path_factory.mktemp("thirdparty")
    source, target = work / "source", work / "site"
    shutil.copytree(PLUGIN_SRC, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    assert (target / "ssl_example_vicreg" / "functional.py").is_file()
    return target


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distribution whose module raises ImportError (and leaves a marker file when imported)."""
    folder = tmp_path_factory.mktemp("broken")
    info = folder / "ssl_broken_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {BROKEN}\nVersion: 0.1.0\nRequires-Dist: ssl-core<2,>=1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[ssl_core.plugins]\nbroken = ssl_broken_plugin\n\n"
        "[ssl_core.objectives]\nbroken.objective = ssl_broken_plugin:Objective\n"
    )
    (folder / "ssl_broken_plugin.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(folder / 'imported.marker')!r}).write_text('imported')\n"
        "raise ImportError('ssl_broken_plugin needs the package not_installed_anywhere')\n"
    )
    return folder


def test_plugins_json_lists_the_installed_plugin(target: Path) -> None:
    result = _python(["-m", "ssl_core", "plugins", "--json"], target)
    assert result.returncode == 0, result.stderr
    plugins = _plugins(json.loads(result.stdout))
    plugin = plugins[PLUGIN]
    assert plugin["status"] == "ok", plugin["problems"]
    assert plugin["version"] == "0.1.0"
    assert set(plugin["requires_core"].split(",")) == {">=1.0", "<2"}
    assert {"kind": "objective", "name": "example.vicreg", "target": "ssl_example_vicreg:VICRegObjective"} in (
        plugin["components"]
    )
    assert plugins["ssl-core"]["status"] == "ok"


_RUN = """
import json, sys, torch
torch.set_num_threads(1)
import ssl_core, ssl_example_vicreg
result = ssl_core.run(sys.argv[1], out=sys.argv[2], overrides=sys.argv[3:])
print(json.dumps({"metrics": result.metrics, "plugin_file": ssl_example_vicreg.__file__}))
"""


def test_example_pipeline_trains_and_evaluates(target: Path, tmp_path: Path) -> None:
    overrides = [
        "train.steps=30",
        "train.batch_size=128",
        "train.log_every=5",
        "train.warmup_steps=0",
        "train.progress=false",
        "plots=false",
        "compare_random_init=false",
    ]
    pipeline = PLUGIN_SRC / "pipeline.toml"
    result = _python(["-c", _RUN, str(pipeline), str(tmp_path / "run"), *overrides], target, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(out["plugin_file"]).is_relative_to(target), "the plugin must come from the pip-installed copy"
    metrics = out["metrics"]
    assert metrics["train"]["steps"] == 30
    knn, probe = metrics["evaluations"]["core.knn"], metrics["evaluations"]["core.linear_probe"]
    assert 0.5 < knn["knn_top1@20"] <= 1.0 and 0.5 < probe["linear_top1"] <= 1.0, metrics["evaluations"]
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {"invariance", "variance", "covariance"} <= set(rows[0]), "VICReg's terms are logged"
    losses = [float(row["loss"]) for row in rows]
    assert losses[-1] < losses[0], f"VICReg loss did not decrease: {losses}"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["evaluations"].keys() == {
        "core.knn",
        "core.linear_probe",
    }


def test_a_broken_plugin_is_reported_and_isolated(target: Path, broken: Path) -> None:
    listing = _python(["-m", "ssl_core", "plugins", "--json"], target, broken)
    assert listing.returncode == 0, listing.stderr
    assert _plugins(json.loads(listing.stdout))[BROKEN]["status"] == "ok"  # metadata alone looks fine
    assert not (broken / "imported.marker").exists(), "listing must not import plugin code"

    checked = _python(["-m", "ssl_core", "plugins", "--check", "--json"], target, broken)
    assert checked.returncode == 0, checked.stderr
    plugins = _plugins(json.loads(checked.stdout))
    assert plugins[BROKEN]["status"] == "error"
    assert any("not_installed_anywhere" in problem for problem in plugins[BROKEN]["problems"]), plugins[BROKEN]
    assert plugins["ssl-core"]["status"] == "ok", plugins["ssl-core"]["problems"]
    assert plugins[PLUGIN]["status"] == "ok", plugins[PLUGIN]["problems"]

    strict = _python(["-m", "ssl_core", "plugins", "--check", "--strict"], target, broken)
    assert strict.returncode != 0
    assert BROKEN in strict.stdout and "error" in strict.stdout
