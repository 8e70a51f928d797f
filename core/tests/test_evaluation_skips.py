"""Items a lazily decoding dataset skips at evaluation time: warned in the main process, counted in metrics.json."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

import ssl_core
from ssl_core import DatasetSplits, KNNEvaluator, LinearProbeEvaluator, Registry, SkippedItem
from ssl_core._components import collate_tensors, digits
from ssl_core._evaluate import eval_loader, evaluate, skipped_in_evaluation

BROKEN = 5


class LazyDigits(Dataset[Any]):
    """Digits "decoded" on access; item ``BROKEN`` is a corrupt file the dataset skips."""

    decodes_lazily = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Any:
        if index == BROKEN:
            return SkippedItem(f"digit-{index}.png", "corrupt")
        return self.x[index], self.y[index]


def lazy_test_digits(root: str | None = None) -> DatasetSplits:
    base = digits()
    x, y = base.test.tensors  # type: ignore[attr-defined]
    return DatasetSplits(base.train, LazyDigits(x, y), collate_tensors, "vector", base.num_classes, dict(base.info))


def _skip_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "could not read" in str(w.message)]


def test_items_skipped_in_two_workers_are_named_in_the_main_process() -> None:
    splits = lazy_test_digits()
    batches = eval_loader(splits.test, splits, batch_size=64, num_workers=2)
    with warnings.catch_warnings(record=True) as caught:  # records the main process's warnings only
        warnings.simplefilter("always")
        rows = sum(len(batch["y"]) for batch in batches)
    assert rows == len(splits.test) - 1
    assert _skip_warnings(caught) == ["skipped an item the dataset could not read (evaluation): digit-5.png (corrupt)"]
    assert batches.skipped == ["digit-5.png (corrupt)"] and len(batches) == -(-len(splits.test) // 64)


def test_every_evaluator_sees_the_split_without_the_skipped_item_which_is_counted_once() -> None:
    splits = lazy_test_digits()
    encoder = ssl_core._components.MLPEncoder(in_dim=64, hidden_dim=16, embed_dim=8)
    evaluators = {"knn": KNNEvaluator(k=[5]), "probe": LinearProbeEvaluator(epochs=5)}
    with skipped_in_evaluation() as skipped, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = evaluate(encoder, splits, evaluators, batch_size=128)
        evaluate(encoder, splits, evaluators, batch_size=128)  # a second pass (random-init baseline): no new warning
    assert skipped == ["digit-5.png (corrupt)"] and len(_skip_warnings(caught)) == 1
    assert 0.0 <= first["knn"]["knn_top1@5"] <= 1.0


def test_a_run_counts_items_skipped_in_evaluation_in_metrics_json(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    registry = Registry()
    registry.register("dataset", "test.lazy_test", lazy_test_digits)
    pipeline: dict[str, Any] = {
        "name": "skips",
        "seed": 0,
        "data": {"name": "test.lazy_test"},
        "encoder": {"name": "core.mlp", "hidden_dim": 16, "embed_dim": 8},
        "views": {"name": "core.noise"},
        "objective": {"name": "core.simclr", "hidden_dim": 16, "proj_dim": 8},
        "train": {"steps": 2, "batch_size": 32, "progress": False, "checkpoint_every": 0},
        "evaluate": [{"name": "core.knn", "k": [5]}],
        "plots": False,
        "compare_random_init": True,
    }
    with pytest.warns(UserWarning, match=r"could not read \(evaluation\): digit-5\.png \(corrupt\)"):
        ssl_core.run(pipeline, out=tmp_path / "run", registry=registry)
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_evaluation"] == 1 and data["skipped_in_evaluation_names"] == ["digit-5.png (corrupt)"]
    assert data["skipped_in_training"] == 0


def test_the_plot_embeds_only_the_test_points_it_draws() -> None:
    import numpy as np

    from ssl_core._evaluate import _plotted_points

    dataset = LazyDigits(torch.randn(2500, 64), torch.zeros(2500, dtype=torch.long))
    plotted = _plotted_points(dataset, seed=3)
    assert len(plotted) == 2000 and plotted.decodes_lazily  # still decoded in workers
    assert list(plotted.indices) == np.random.default_rng(3).choice(2500, size=2000, replace=False).tolist()
    small = LazyDigits(torch.randn(100, 64), torch.zeros(100, dtype=torch.long))
    assert _plotted_points(small, seed=3) is small
