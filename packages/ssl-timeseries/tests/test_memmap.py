"""timeseries.memmap: series read row by row from .npy memory maps, trained with DataLoader workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ssl_core
from ssl_timeseries import MemmapSeriesDataset, SeriesDataError, memmap


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


def _mapped_resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:
            inside = len(fields) > 5 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads /proc/self/smaps (Linux)")
def test_reading_rows_keeps_no_page_of_the_file_resident(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((4000, 256, 1)).astype(np.float32)  # 4 MB
    np.save(tmp_path / "x.npy", x)
    dataset = MemmapSeriesDataset(tmp_path / "x.npy", np.zeros(4000, dtype=np.int64))
    for index in range(0, 4000, 7):
        assert np.array_equal(dataset[index][0].numpy(), x[index])
    assert _mapped_resident_kb((tmp_path / "x.npy").resolve()) == 0  # a memory map's read-around would hold MBs
