"""timeseries.svm finishes in bounded time on weak encoders (random init, collapsed) on real UCR data."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_core import Features
from ssl_timeseries import SVMEvaluator, TS2VecEncoder, fit_svm, ucr


def loaders(dataset: str) -> tuple[DataLoader[Any], DataLoader[Any], int]:
    splits = ucr(dataset=dataset)
    train = DataLoader(splits.train, batch_size=64, collate_fn=splits.collate)
    test = DataLoader(splits.test, batch_size=64, collate_fn=splits.collate)
    return train, test, int(splits.info["in_channels"])


class Collapsed(nn.Module):
    """A badly trained encoder: the same representation for every series."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, Any]) -> Features:
        x = batch["x"]
        tokens = torch.ones(x.shape[0], x.shape[1], 8) + 0 * self.dummy
        return Features(tokens=tokens, pooled=tokens.mean(dim=1))


@pytest.mark.parametrize("dataset", ["ArrowHead", "GunPoint"])
def test_random_init_encoder_evaluates_in_bounded_time(dataset: str) -> None:
    train, test, channels = loaders(dataset)
    torch.manual_seed(0)
    encoder = TS2VecEncoder(in_channels=channels, embed_dim=64, hidden_dim=16, depth=3)
    start = time.perf_counter()
    metrics = SVMEvaluator()(encoder, train, test)
    assert time.perf_counter() - start < 60
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_collapsed_encoder_hits_the_cap_and_says_so() -> None:
    # ArrowHead has 36 training series: TS2Vec's plain SVC(C=inf), which never converged
    # on identical representations of different classes before the cap.
    train, test, _ = loaders("ArrowHead")
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match=r"timeseries\.svm: .*max_iter=10000000"):
        metrics = SVMEvaluator()(Collapsed(), train, test)
    assert time.perf_counter() - start < 60
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_the_cap_also_bounds_the_grid_search() -> None:
    x = np.zeros((60, 4))  # 60 samples, 2 classes: the grid-search branch
    y = np.r_[np.zeros(30), np.ones(30)].astype(np.int64)
    with pytest.warns(RuntimeWarning, match="stopped at max_iter=1000"):
        svm = fit_svm(x, y, max_iter=1000)
    assert 0.0 <= svm.score(x, y) <= 1.0


def test_converged_fits_do_not_warn() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(4, 1, (30, 2))]
    y = np.r_[np.zeros(30), np.ones(30)].astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_svm(x, y).score(x, y) > 0.9


def test_max_iter_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_iter"):
        SVMEvaluator(max_iter=0)
