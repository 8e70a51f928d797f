"""timeseries.memmap: series read row by row from .npy memory maps, trained with DataLoader workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ssl_core
from ssl_timeseries import SeriesDataError, memmap


def _write(folder: Path, n_train: int = 48, n_test: int = 16, length: int = 64) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        walks = np.cumsum(rng.standard_normal((n, length, 1)), axis=1).astype(np.float32)
        labels = np.arange(n) % 2
        walks[labels == 1] *= -1  # two classes a linear probe can tell apart
        np.save(folder / f"x_{split}.npy", walks)
        np.save(folder / f"y_{split}.npy", labels)


def test_memmap_items_equal_the_arrays_and_nothing_is_loaded_up_front(tmp_path: Path) -> None:
    _write(tmp_path)
    splits = memmap(str(tmp_path))
    assert isinstance(splits.train.x, np.memmap)  # type: ignore[attr-defined]
    x = np.load(tmp_path / "x_train.npy")
    assert torch.equal(splits.train[5][0], torch.from_numpy(x[5]))
    assert splits.info["in_channels"] == 1 and splits.info["series_length"] == 64


def test_ts2vec_trains_on_a_memmap_with_workers(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = tmp_path / "data"
    data.mkdir()
    _write(data)
    result = ssl_core.run(
        "timeseries.ts2vec",
        out=tmp_path / "run",
        root=str(data),
        overrides=[
            "data={name='timeseries.memmap'}", "train.steps=3", "train.batch_size=8", "train.num_workers=2",
            "train.progress=false", "plots=false", "compare_random_init=false",
        ],
    )  # fmt: skip
    assert result.metrics["train"]["steps"] == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["evaluations"]["timeseries.svm"]["accuracy"] > 0


def test_missing_arrays_are_named(tmp_path: Path) -> None:
    with pytest.raises(SeriesDataError, match=r"lacks x_train\.npy, y_train\.npy"):
        memmap(str(tmp_path))
