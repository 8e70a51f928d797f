"""Tiny data (issue 18): timeseries.svm adapts its folds to small classes; TS2Vec end to end on 16 + 8 series."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ssl_core import Features, run
from ssl_timeseries import SVMEvaluator, fit_svm


def blobs(counts: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` 4-d points around a centre per class ``c``, well separated."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(5.0 * c, 0.5, (n, 4)) for c, n in enumerate(counts)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return x, y


def test_fit_svm_reduces_folds_to_the_smallest_class() -> None:
    # 60 series (TS2Vec's rule would search C), but class 1 has 3: a 3-fold search instead of 5
    x, y = blobs([57, 3])
    with pytest.warns(UserWarning, match=r"timeseries\.svm: the smallest class has 3 train samples, fewer than cv=5"):
        svm = fit_svm(x, y)
    assert svm.C in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))
    assert svm.score(x, y) > 0.9


def test_fit_svm_with_one_sample_in_a_class_falls_back_to_a_plain_fit() -> None:
    x, y = blobs([30, 29, 1])
    with pytest.warns(UserWarning, match=r"timeseries\.svm: a class has a single train sample.*plain SVC\(C=inf\)"):
        svm = fit_svm(x, y)
    assert np.isposinf(svm.C) and svm.score(x, y) == 1.0


def test_fit_svm_below_50_samples_is_tsvecs_plain_fit_without_a_warning() -> None:
    x, y = blobs([8, 8])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        svm = fit_svm(x, y)
    assert np.isposinf(svm.C)


def test_fit_svm_with_a_single_class_predicts_it() -> None:
    x, y = blobs([4])
    with pytest.warns(UserWarning, match=r"timeseries\.svm: the train split holds a single class \(0\)"):
        model = fit_svm(x, y)
    assert (model.predict(blobs([2, 2])[0]) == 0).all()


class Identity(nn.Module):
    """The series themselves as tokens (max-pooled by the evaluator)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, Any]) -> Features:
        tokens = batch["x"].float() + 0 * self.dummy
        return Features(tokens=tokens, pooled=tokens.mean(dim=1))


def series(labels: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    return [{"x": 3.0 * y[:, None, None] + 0.3 * torch.randn(len(labels), 10, 2, generator=g), "y": y}]


def test_svm_evaluator_warns_on_test_classes_missing_from_train() -> None:
    with pytest.warns(UserWarning, match=r"timeseries\.svm: .*test class 2 has no train sample"):
        metrics = SVMEvaluator()(Identity(), series([0, 1, 0, 1]), series([0, 1, 2], seed=1))
    assert metrics["accuracy"] <= 2 / 3 + 1e-9


def test_svm_evaluator_with_a_single_train_class() -> None:
    with pytest.warns(UserWarning, match=r"single class"):
        metrics = SVMEvaluator()(Identity(), series([1, 1, 1]), series([1, 0], seed=1))
    assert metrics == {"accuracy": 0.5, "svm_c": 0.0}


# ---------------------------------------------------------------- TS2Vec end to end on 16 + 8 series


def gunpoint_npz(folder: Path, train_per_class: int = 8, test_per_class: int = 4) -> Path:
    """GunPoint (bundled with aeon) cut to ``2 x train_per_class`` train and ``2 x test_per_class`` test series."""
    aeon = pytest.importorskip("aeon.datasets", reason="aeon (which ships GunPoint) is not installed")
    parts = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        x, y = aeon.load_classification("GunPoint", split=split)
        keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
        parts[f"x_{split}"], parts[f"y_{split}"] = np.asarray(x)[keep], np.asarray(y)[keep]
    path = folder / "gunpoint-tiny.npz"
    np.savez(path, **parts)
    return path


def test_ts2vec_recipe_runs_end_to_end_on_16_plus_8_series(tmp_path: Path) -> None:
    path = gunpoint_npz(tmp_path)
    with np.load(path) as data:
        assert len(data["x_train"]) == 16 and len(data["x_test"]) == 8 and len(set(data["y_train"])) == 2
    data = f'data={{name="timeseries.arrays", path="{path.as_posix()}", layout="nct"}}'
    overrides = ["train.steps=2", "train.progress=false", "plots=true", "encoder.depth=2", "encoder.embed_dim=64",
                 "encoder.hidden_dim=16", data]  # fmt: skip
    out = tmp_path / "run"
    result = run("timeseries.ts2vec", overrides=overrides, out=out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["evaluations"]["timeseries.svm"]["accuracy"] <= 1.0
    assert result.metrics["evaluations"]["timeseries.svm"]
    assert (out / "loss.png").is_file() and (out / "embeddings.png").is_file()
