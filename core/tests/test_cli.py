"""The ssl command end to end: run, evaluate, info and its error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
QUICK = [
    "--set",
    "train.steps=20",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.progress=false",
    "--set",
    "encoder.hidden_dim=32",
    "--set",
    "encoder.embed_dim=16",
    "--set",
    "evaluate=[{name='core.knn', k=[10]}]",
]


def ssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ssl_core", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = ssl("run", "--out", str(out), *QUICK, "--set", "plots=false")
    assert result.returncode == 0, result.stderr
    assert "knn_top1@10" in result.stdout and "random init" in result.stdout
    return out


def test_run_builtin_quickstart_writes_outputs(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 20
    assert metrics["evaluations"]["core.knn"]["knn_top1@10"] > 0.5
    assert "core.knn" in metrics["random_init"]
    assert (run_dir / "checkpoints" / "step-000020.pt").is_file()
    assert "steps = 20" in (run_dir / "config.toml").read_text()


def test_evaluate_a_run_directory(run_dir: Path) -> None:
    result = ssl("evaluate", str(run_dir), "--evaluator", "core.linear_probe", "--json")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout[result.stdout.index("{") :])
    assert values["core.linear_probe"]["linear_top1"] > 0.5


def test_info_shows_parameters_and_docs() -> None:
    result = ssl("info", "core.mlp")
    assert result.returncode == 0, result.stderr
    assert "embed_dim" in result.stdout and "LayerNorm" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "missing.toml"), "pipeline file 'missing.toml' not found"),
        (("run", "--set", "train.stesp=3"), "did you mean 'steps'"),
        (("run", "--set", "objective.name=core.simclir"), "did you mean 'core.simclr'"),
        (("info", "core.knm"), "did you mean 'core.knn'"),
        (("evaluate", "nowhere.pt"), "no checkpoint at nowhere.pt"),
    ],
)
def test_errors_exit_2_with_a_hint(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    result = ssl(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_without_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    result = ssl("run", "--out", str(tmp_path / "fresh"), "--resume", *QUICK)
    assert result.returncode == 2
    assert "no checkpoint found" in result.stderr and "without --resume" in result.stderr
