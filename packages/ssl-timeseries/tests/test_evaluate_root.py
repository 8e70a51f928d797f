"""``ssl evaluate RUN_DIR`` finds the data again without ``--root`` (issue 18).

A run given ``--root`` records it (absolute) as ``data.root`` in ``config.toml`` and in its checkpoints;
``ssl evaluate`` rebuilds the dataset from there, ``--root`` overrides it when the data has moved, and when
neither the recorded root nor any root works the one-line error says to pass ``--root``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
import torch

import ssl_core


def _pipeline(tmp_path: Path) -> Path:
    pipeline: dict[str, Any] = {
        "name": "tiny-ts2vec",
        "seed": 0,
        "data": {"name": "timeseries.arrays", "path": "toy.npz"},  # relative to the root given on the command line
        "encoder": {"name": "timeseries.ts2vec", "embed_dim": 8, "hidden_dim": 8, "depth": 1},
        "views": {"name": "timeseries.crops"},
        "objective": {"name": "timeseries.ts2vec"},
        "train": {"steps": 2, "batch_size": 8, "progress": False, "log_every": 1},
        "evaluate": [{"name": "core.knn", "k": [3]}],
        "plots": False,
        "compare_random_init": False,
    }
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(pipeline))
    return path


def _data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = np.tile([0, 1], 8), np.tile([0, 1], 4)
    x_train = rng.normal(size=(16, 24)) + 3 * y_train[:, None]
    x_test = rng.normal(size=(8, 24)) + 3 * y_test[:, None]
    folder.mkdir(parents=True)
    np.savez(folder / "toy.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return folder


@pytest.fixture
def run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    data, out = _data(tmp_path / "data"), tmp_path / "run"
    argv = ["run", str(_pipeline(tmp_path)), "--root", str(data), "--out", str(out)]
    assert ssl_core.cli_main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return out


def _last_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert found, f"no checkpoint in {run_dir / 'checkpoints'}"
    return found[-1]


def test_the_run_records_its_root(run_dir: Path, tmp_path: Path) -> None:
    stored = ssl_core.load_config(run_dir / "config.toml").data
    assert (stored.name, stored.params) == ("timeseries.arrays", {"path": "toy.npz", "root": str(tmp_path / "data")})
    checkpoint = _last_checkpoint(run_dir)
    assert torch.load(checkpoint, weights_only=False)["config"]["data"]["root"] == str(tmp_path / "data")


def test_evaluate_uses_the_recorded_root_and_root_overrides_it_after_a_move(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ssl_core.cli_main(["evaluate", str(run_dir), "--json"]) == 0  # no --root: the recorded one
    assert "knn_top1@3" in capsys.readouterr().out
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    assert ssl_core.cli_main(["evaluate", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ssl evaluate: error: ")
    assert f"from the root the run recorded, {tmp_path / 'data'}" in err and "pass --root DIR" in err
    assert ssl_core.cli_main(["evaluate", str(run_dir), "--root", str(moved), "--json"]) == 0
    assert "knn_top1@3" in capsys.readouterr().out


def test_a_run_without_a_recorded_root_says_to_pass_root(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a run from before roots were recorded: the stored config has no data.root and the data is elsewhere."""
    checkpoint = _last_checkpoint(run_dir)
    state = torch.load(checkpoint, weights_only=False)
    del state["config"]["data"]["root"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    monkeypatch.chdir(tmp_path)  # toy.npz is not here either
    assert ssl_core.cli_main(["evaluate", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(the run recorded no dataset root)" in err and "pass --root DIR" in err
    assert ssl_core.cli_main(["evaluate", str(old), "--root", str(tmp_path / "data")]) == 0
