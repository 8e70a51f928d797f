"""Tiny data (issue 18): the MAE recipe end to end, with plots, on a 2-class image folder of 16 + 8 images."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from ssl_core import run


def image_folder(root: Path, make_image: Callable[..., Path], train: int = 8, test: int = 4) -> Path:
    """``root/{train,test}/{cat,dog}/*.png``: ``train`` and ``test`` random 32 px images per class."""
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(("cat", "dog")):
            for i in range(count):
                make_image(root / split / name / f"{i}.png", seed=1000 * label + 100 * (split == "test") + i)
    return root


def test_mae_recipe_on_16_plus_8_images_regression(tmp_path: Path, make_image: Callable[..., Path]) -> None:
    # issue 18: the recipe's ViT-Tiny (192-d) on 8 test images made plot_embeddings' PCA(n_components=50) fail;
    # the recipe's kNN asks for k=20 and k=200 with 16 train images
    root = image_folder(tmp_path / "images", make_image)
    out = tmp_path / "run"
    overrides = ["train.steps=2", "train.batch_size=8", "train.progress=false", "train.precision=fp32", "plots=true",
                 "encoder.depth=2", "objective.decoder_dim=32", "objective.decoder_depth=1",
                 "objective.decoder_heads=2"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("vision.mae", overrides=overrides, root=str(root), out=out)
    text = "\n".join(str(w.message) for w in caught)
    assert "core.knn: k=20, 200 exceeds the 16 train samples" in text
    assert "plot_embeddings: only 8 test samples" in text
    assert "was skipped" not in text  # no plot failed
    metrics = json.loads((out / "metrics.json").read_text())
    knn = metrics["evaluations"]["core.knn"]
    assert {"knn_top1@20", "knn_top1@200"} <= set(knn)  # the recipe's keys, whatever the bank size
    assert 0.0 <= metrics["evaluations"]["core.linear_probe"]["linear_top1"] <= 1.0
    assert result.metrics["evaluations"]
    assert (out / "loss.png").is_file() and (out / "embeddings.png").is_file()
