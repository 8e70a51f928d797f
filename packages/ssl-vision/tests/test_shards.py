"""WebDataset tar shards (issue 15): same images as the folder, a corrupt member skipped and named, index errors."""

from __future__ import annotations

import json
import tarfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ssl_core
from ssl_core import SkippedItem
from ssl_vision import ShardedImages, image_folder, index_shard, sharded_images, write_shards

from .test_streaming import jpeg_folder, pipeline

pytest.importorskip("webdataset", reason="writing shards needs webdataset (pip install 'ssl-vision[shards]')")


def fingerprints(dataset: Any) -> list[tuple[int, bytes]]:
    items = [dataset[i] for i in range(len(dataset))]
    return sorted((int(label), image.numpy().tobytes()) for image, label in items)


@pytest.fixture
def folder_and_shards(tmp_path: Path, make_image: Callable[..., Path]) -> tuple[Path, Path]:
    folder = jpeg_folder(tmp_path / "images", make_image, train=6, test=2)  # 24 train, 8 test images
    shards = tmp_path / "shards"
    write_shards(folder, shards, max_count=5, progress=False)
    return folder, shards


def test_shards_hold_the_folders_images_mixed_across_shards(folder_and_shards: tuple[Path, Path]) -> None:
    folder, shards = folder_and_shards
    summary = json.loads((shards / "shards.json").read_text())
    assert summary["splits"] == {"train": 24, "test": 8}
    assert [s["count"] for s in summary["shards"]["train"]] == [5, 5, 5, 5, 4]
    memory, sharded = image_folder(str(folder)), sharded_images(str(shards))
    assert isinstance(sharded.train, ShardedImages) and sharded.train.decodes_lazily
    assert sharded.info["classes"] == memory.info["classes"] and sharded.info["image_size"] == 32
    assert fingerprints(sharded.train) == fingerprints(memory.train)  # the same JPEG bytes, the same decode
    assert fingerprints(sharded.test) == fingerprints(memory.test)
    first_shard = np.load(shards / "train-000000.tar.idx.npy")
    assert len(set(first_shard[:, 2].tolist())) > 1  # written in a shuffled order: a shard mixes classes


def test_a_corrupt_member_is_skipped_named_and_counted(folder_and_shards: tuple[Path, Path], tmp_path: Path) -> None:
    _, shards = folder_and_shards
    shard = shards / "train-000001.tar"
    offset, size, _ = index_shard(shard)[2]
    with shard.open("r+b") as file:  # garbage over the third image's bytes, the tar itself stays valid
        file.seek(int(offset))
        file.write(b"\x00" * int(size))
    with tarfile.open(shard) as tar:
        names = [m.name for m in tar if m.name.endswith(".jpg")]
    dataset = sharded_images(str(shards)).train
    skipped = [item for item in (dataset[i] for i in range(len(dataset))) if isinstance(item, SkippedItem)]
    assert [item.name for item in skipped] == [f"{shard}:{names[2]}"] and skipped[0].reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = pipeline(steps=3, num_workers=2, checkpoint_every=0, drop_last=False)
        config["data"], config["train"]["batch_size"] = {"name": "vision.shards"}, 24
        ssl_core.run(config, root=str(shards), out=tmp_path / "run")
    assert any(names[2] in str(w.message) and "could not read" in str(w.message) for w in caught)
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_training"] == 3  # one epoch per step, the corrupt image in each
    assert data["skipped_names"][0] == f"{shard}:{names[2]} (cannot identify image file)"


def test_index_errors_name_the_file_and_the_fix(folder_and_shards: tuple[Path, Path]) -> None:
    _, shards = folder_and_shards
    summary = json.loads((shards / "shards.json").read_text())
    summary["shards"]["train"][0]["count"] = 7
    (shards / "shards.json").write_text(json.dumps(summary))
    with pytest.raises(ssl_core.ConfigError, match=r"train-000000\.tar\.idx\.npy has 5 images but .* records 7"):
        sharded_images(str(shards))
    (shards / "train-000000.tar.idx.npy").unlink()
    with pytest.raises(ssl_core.ConfigError, match=r"idx\.npy is missing; write it with `ssl vision-shards"):
        sharded_images(str(shards))
    with pytest.raises(ssl_core.ConfigError, match=r"shards\.json is missing"):
        sharded_images(str(shards / "nowhere"))


def test_the_cli_writes_and_indexes_shards(folder_and_shards: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    folder, _ = folder_and_shards
    out = tmp_path / "cli"
    assert ssl_core.cli_main(["vision-shards", str(folder), "--out", str(out), "--no-progress"]) == 0
    assert "ssl run vision.mae --set data.name=vision.shards --root" in capsys.readouterr().out
    for index in [*out.glob("*.idx.npy"), out / "shards.json"]:  # shards from elsewhere: tars without our index
        index.unlink()
    assert ssl_core.cli_main(["vision-shards", str(out), "--index-only"]) == 0
    again = sharded_images(str(out))
    expected = image_folder(str(folder)).train.labels.sort().values
    assert len(again.train) == 24 and torch.equal(again.train.labels.sort().values, expected)
