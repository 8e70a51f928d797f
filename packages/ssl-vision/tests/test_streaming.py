"""Streamed image folders (issue 15): same tensors as in memory, MAE with workers, exact mid-epoch resume, bad files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import SkippedItem
from ssl_core.testing import DatasetConformance
from ssl_vision import StreamedImageFolder, cifar10, collate_images, image_folder

CIFAR_ROOT = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "cifar10"
SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLASSES = ("airplane", "automobile", "bird", "cat")


def jpeg_folder(root: Path, make_image: Callable[..., Path], train: int, test: int) -> Path:
    """``root/{train,test}/<4 classes>/*.jpg``: CIFAR-10 JPEGs from the shared copy, or random JPEGs without it."""
    shared = CIFAR_ROOT.resolve()
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            source = shared / split / name
            files = sorted(source.glob("*.jpg"))[:count] if source.is_dir() else []
            for i, file in enumerate(files):
                shutil.copyfile(file, root / split / name / f"{i:03d}.jpg")
            for i in range(len(files), count):
                make_image(root / split / name / f"{i:03d}.jpg", seed=1000 * label + 100 * (split == "test") + i)
    return root


def assert_same_items(in_memory: Any, streamed: Any) -> None:
    assert len(in_memory) == len(streamed)
    for i in range(len(streamed)):
        (a, label_a), (b, label_b) = in_memory[i], streamed[i]
        assert b.dtype == torch.uint8 and torch.equal(a, b) and label_a == label_b, f"item {i} differs"


def test_streamed_and_in_memory_folders_give_identical_jpeg_tensors(
    tmp_path: Path, make_image: Callable[..., Path]
) -> None:
    root = jpeg_folder(tmp_path, make_image, train=8, test=3)
    memory, streamed = image_folder(str(root)), image_folder(str(root), stream=True)
    assert isinstance(streamed.train, StreamedImageFolder) and streamed.train.decodes_lazily
    assert streamed.info["image_size"] == memory.info["image_size"] == 32 and streamed.info["stream"] is True
    assert streamed.info["classes"] == memory.info["classes"] == list(CLASSES)
    assert_same_items(memory.train, streamed.train)
    assert_same_items(memory.test, streamed.test)
    batch_a = collate_images([memory.train[i] for i in range(5)])
    batch_b = collate_images([streamed.train[i] for i in range(5)])
    assert torch.equal(batch_a["x"], batch_b["x"]) and torch.equal(batch_a["y"], batch_b["y"])


def test_resize_conversions_and_max_per_class_match_too(image_tree: Path, make_image: Any) -> None:
    make_image(image_tree / "train" / "cat" / "big.png", size=(48, 40))  # resized with the others
    memory = image_folder(str(image_tree), image_size=24, max_per_class=5)
    streamed = image_folder(str(image_tree), image_size=24, max_per_class=5, stream=True)
    assert len(streamed.train) == 10 and streamed.train.labels.tolist() == [0] * 5 + [1] * 5
    assert streamed.train[0][0].shape == (3, 24, 24)
    assert_same_items(memory.train, streamed.train)
    assert_same_items(memory.test, streamed.test)
    via_cifar = cifar10(str(image_tree), image_size=24, max_per_class=5, stream=True)
    assert isinstance(via_cifar.train, StreamedImageFolder) and len(via_cifar.train) == 10


def test_streamed_size_comes_from_the_first_image_unless_set(image_tree: Path, make_image: Any) -> None:
    make_image(image_tree / "train" / "cat" / "-wide.png", size=(48, 40))
    with pytest.raises(ssl_core.ConfigError, match="not square; set image_size"):
        image_folder(str(image_tree), stream=True)
    (image_tree / "train" / "cat" / "-wide.png").unlink()
    make_image(image_tree / "train" / "cat" / "zz-big.png", size=(48, 48))
    splits = image_folder(str(image_tree), stream=True)
    assert splits.info["image_size"] == 32 and splits.train.path(6).name == "zz-big.png"
    assert splits.train[6][0].shape == (3, 32, 32)  # resized to the first image's side


def test_a_corrupt_file_is_a_skipped_item_naming_it(image_tree: Path) -> None:
    (image_tree / "train" / "dog" / "junk.jpg").write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    splits = image_folder(str(image_tree), stream=True)
    items = [splits.train[i] for i in range(len(splits.train))]
    skipped = [item for item in items if isinstance(item, SkippedItem)]
    assert len(items) == 13 and len(skipped) == 1
    assert skipped[0].name.endswith("junk.jpg") and skipped[0].reason


class TestStreamedFolderConformance(DatasetConformance):
    def make_provider(self) -> Any:
        return image_folder

    def provider_options(self) -> dict[str, Any]:
        return {"stream": True}

    @pytest.fixture(autouse=True)
    def _root(self, image_tree: Path) -> None:
        self.root = str(image_tree)


SMALL = ["encoder.depth=2", "objective.decoder_dim=32", "objective.decoder_depth=1", "objective.decoder_heads=2"]


def pipeline(steps: int, **train: Any) -> dict[str, Any]:
    """The MAE recipe, shrunk: ViT-Tiny of depth 2 at 32 px, small decoder, batch 8, streamed folder, no evaluation."""
    from ssl_vision import mae

    cfg: dict[str, Any] = mae()
    cfg["data"] = {"name": "vision.image_folder", "stream": True}
    cfg["encoder"]["depth"] = 2
    cfg["objective"].update(decoder_dim=32, decoder_depth=1, decoder_heads=2)
    cfg["train"].update(steps=steps, batch_size=8, log_every=1, progress=False, precision="fp32", **train)
    cfg.update(evaluate=[], plots=False, compare_random_init=False)
    return cfg


@pytest.mark.filterwarnings("ignore:core.knn")
def test_mae_trains_on_a_streamed_folder_with_two_workers(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = jpeg_folder(tmp_path / "images", make_image, train=6, test=3)
    overrides = ["data.stream=true", "train.num_workers=2", "train.steps=4", "train.batch_size=8",
                 "train.progress=false", "train.precision=fp32", "plots=false", *SMALL]  # fmt: skip
    result = ssl_core.run("vision.mae", overrides=overrides, root=str(root), out=tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.metrics["train"]["steps"] == 4 and metrics["data"].get("skipped_in_training", 0) == 0
    losses = [float(row["loss"]) for row in csv.DictReader((tmp_path / "run" / "log.csv").open())]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert 0.0 <= metrics["evaluations"]["core.knn"]["knn_top1@20"] <= 1.0  # evaluation read the streamed splits


def test_a_corrupt_jpeg_is_skipped_with_a_warning_and_counted(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    root = jpeg_folder(tmp_path / "images", make_image, train=3, test=2)
    (root / "train" / "bird" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 these bytes are garbage" * 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ssl_core.run(pipeline(steps=4, num_workers=2, checkpoint_every=0), root=str(root), out=tmp_path / "run")
    named = [str(w.message) for w in caught if "broken.jpg" in str(w.message)]
    assert named and "skipped an item the dataset could not read" in named[0]
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_training"] >= 1  # 13 items, batch 8: an epoch is one batch, which may miss it
    assert any("broken.jpg" in name for name in data["skipped_names"])


KILL_SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import ssl_core

class KillAtFive:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
if sys.argv[3] == "kill":
    hooks.register(KillAtFive())
config = json.loads(sys.argv[1])
ssl_core.run(config, out=sys.argv[2], resume=sys.argv[3] == "resume", hooks=hooks, root=sys.argv[4])
"""


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_kill_mid_epoch_with_two_workers_then_resume_is_exact(
    tmp_path: Path, make_image: Callable[..., Path], source: str
) -> None:
    root = jpeg_folder(tmp_path / "images", make_image, train=20, test=2)  # 80 images, batch 8: 10 batches an epoch
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    cfg = pipeline(steps=8, num_workers=2, checkpoint_every=1)
    if source == "shards":  # WebDataset tar shards, read by offset
        pytest.importorskip("webdataset", reason="writing shards needs webdataset")
        from ssl_vision import write_shards

        root = tmp_path / "shards"
        write_shards(tmp_path / "images", root, max_count=16, progress=False)
        cfg["data"] = {"name": "vision.shards"}
    config = json.dumps(cfg)

    def launch(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), config, str(out), mode, str(root)]
        return subprocess.run(command, capture_output=True, text=True, env=SCRIPT_ENV, timeout=300)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    full = launch(straight, "full")
    assert full.returncode == 0, full.stderr[-2000:]
    assert launch(killed, "kill").returncode == -9
    state = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000005.pt", weights_only=False)
    assert state["epoch"] == 0 and state["batch_in_epoch"] == 5  # really mid-epoch (10 batches)
    resumed = launch(killed, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with (straight / "log.csv").open() as a, (killed / "log.csv").open() as b:
        losses = [r["loss"] for r in csv.DictReader(a)]
        assert len(losses) == 8 and losses == [r["loss"] for r in csv.DictReader(b)]
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000008.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000008.pt", weights_only=False)["model"]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_paper_presets_stream_their_image_folder() -> None:
    from ssl_vision import dino, mae

    for recipe in (mae, dino):
        assert recipe(preset="paper")["data"] == {"name": "vision.image_folder", "image_size": 224, "stream": True}
        assert "stream" not in recipe()["data"]  # the CIFAR subset fits in memory
