"""Small splits (issue 18): plots, kNN and probes adapt with a warning naming the component instead of failing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core import KNNEvaluator, LayerWeightedProbeEvaluator, LinearProbeEvaluator
from ssl_core._plots import plot_embeddings
from ssl_core.functional import label_coverage_problems, warn_if_few_labels
from ssl_core.testing import ToyEncoder


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def batches(labels: list[int], *, in_dim: int = 12, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """One labelled batch ``{"x": [N, 3, in_dim], "y": [N]}``: each sample its class prototype plus noise."""
    prototypes = torch.randn(max(labels) + 1, 1, in_dim, generator=torch.Generator().manual_seed(1))
    y = torch.tensor(labels)
    x = prototypes[y] + 0.3 * torch.randn(len(labels), 3, in_dim, generator=torch.Generator().manual_seed(seed))
    return [{"x": x, "y": y}]


def messages(caught: list[warnings.WarningMessage]) -> str:
    return "\n".join(str(w.message) for w in caught)


# --------------------------------------------------------------------------- plot_embeddings


def test_embeddings_plot_of_13_wide_samples_is_written_with_a_warning(tmp_path: Path) -> None:
    # issue 18: 13 test files of 256-d features made PCA(n_components=50) fail
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="plot_embeddings: only 13 test samples.*perplexity"):
        path = plot_embeddings(rng.normal(size=(13, 256)), np.arange(13) % 2, tmp_path / "e.png")
    assert path.is_file() and path.stat().st_size > 0


@pytest.mark.parametrize(("n", "dim"), [(0, 64), (1, 64), (2, 1), (2, 256)])
def test_embeddings_plot_of_fewer_than_3_samples_skips_the_projection(tmp_path: Path, n: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match=f"plot_embeddings: only {n} test sample.*projection was skipped"):
        path = plot_embeddings(rng.normal(size=(n, dim)), np.arange(n) % 2, tmp_path / "e.png")
    assert path.is_file()


def test_embeddings_plot_of_one_dimensional_features(tmp_path: Path) -> None:
    # t-SNE's PCA initialisation needs two feature columns: a 1-d feature starts at random
    with pytest.warns(UserWarning, match="perplexity"):
        path = plot_embeddings(np.arange(6.0)[:, None], np.array([0, 0, 0, 1, 1, 1]), tmp_path / "e.png")
    assert path.is_file()


def test_embeddings_plot_of_enough_samples_does_not_warn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_embeddings(rng.normal(size=(40, 64)), np.arange(40) % 4, tmp_path / "e.png").is_file()


def test_embeddings_plot_rejects_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[N, D\] features and \[N\] labels"):
        plot_embeddings(np.zeros((4, 2)), np.zeros(3), tmp_path / "e.png")


# --------------------------------------------------------------------------- label coverage


def test_label_coverage_problems() -> None:
    assert label_coverage_problems([0, 1, 0, 1], [1, 0]) == []
    assert label_coverage_problems(torch.tensor([0, 0]), torch.tensor([0])) == [
        "the train split holds a single class (0)"
    ]
    assert label_coverage_problems(np.array([0, 1]), np.array([2, 3, 1])) == [
        "2 train samples for 4 classes",
        "test classes 2, 3 have no train sample",
    ]
    with pytest.warns(UserWarning, match=r"demo: the train split holds a single class \(1\); 1 train sample for 2"):
        assert warn_if_few_labels("demo", [1], [0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_few_labels("demo", [0, 1], [1])


# --------------------------------------------------------------------------- kNN


def test_knn_clamps_k_to_the_bank_and_keeps_the_metric_names() -> None:
    train, test = batches([0, 1] * 3), batches([0, 1, 1, 0], seed=1)
    encoder = ToyEncoder()
    with pytest.warns(UserWarning, match=r"core\.knn: k=20, 200 exceeds the 6 train samples.*k=6 is used"):
        metrics = KNNEvaluator(k=(2, 20, 200))(encoder, train, test)
    assert sorted(metrics) == ["knn_top1@2", "knn_top1@20", "knn_top1@200"]  # stable keys, no top-5 with 2 classes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k=6 fits the bank: no warning
        whole_bank = KNNEvaluator(k=6)(encoder, train, test)["knn_top1@6"]
    assert metrics["knn_top1@20"] == metrics["knn_top1@200"] == whole_bank


def test_knn_warns_when_test_classes_are_missing_from_the_bank() -> None:
    with pytest.warns(UserWarning, match=r"core\.knn: .*test class 2 has no train sample"):
        metrics = KNNEvaluator(k=1)(ToyEncoder(), batches([0, 1, 0, 1]), batches([0, 1, 2], seed=1))
    assert metrics["knn_top1@1"] <= 2 / 3


# --------------------------------------------------------------------------- linear and layer probes


@pytest.mark.parametrize(
    ("train_labels", "test_labels", "expected"),
    [
        ([0, 1], [0, 1, 2, 3], r"2 train samples for 4 classes; test classes 2, 3 have no train sample"),
        ([0, 0, 0], [0, 1], r"single class \(0\)"),
        ([0], [0], r"single class \(0\)"),
    ],
)
def test_linear_probe_on_tiny_or_lopsided_train_splits(
    train_labels: list[int], test_labels: list[int], expected: str
) -> None:
    with pytest.warns(UserWarning, match=rf"core\.linear_probe: .*{expected}"):
        metrics = LinearProbeEvaluator(epochs=5)(ToyEncoder(), batches(train_labels), batches(test_labels, seed=1))
    assert 0.0 <= metrics["linear_top1"] <= 1.0 and np.isfinite(metrics["linear_train_top1"])


def test_layer_probe_with_fewer_samples_than_classes() -> None:
    with pytest.warns(UserWarning, match=r"core\.layer_probe: 2 train samples for 3 classes"):
        metrics = LayerWeightedProbeEvaluator(epochs=3, hidden_dim=8)(
            ToyEncoder(), batches([0, 1]), batches([0, 1, 2], seed=1)
        )
    assert 0.0 <= metrics["layer_probe_top1"] <= 1.0
    assert sum(metrics[f"layer_weight_{i}"] for i in range(2)) == pytest.approx(1.0)


def test_probes_on_adequate_splits_do_not_warn() -> None:
    train, test = batches([0, 1, 2] * 4), batches([0, 1, 2], seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearProbeEvaluator(epochs=5)(ToyEncoder(), train, test)
        LayerWeightedProbeEvaluator(epochs=2, hidden_dim=8)(ToyEncoder(), train, test)
        KNNEvaluator(k=5)(ToyEncoder(), train, test)
