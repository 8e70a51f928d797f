"""Behaviour of the on-device k-means: recovery, quality against scikit-learn, determinism, metrics, errors."""

from __future__ import annotations

import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from ssl_core._kmeans import KMeansResult, kmeans, kmeans_predict


def blobs(n_per_cluster: int = 100, k: int = 5, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=generator) * 20.0
    truth = torch.arange(k).repeat_interleave(n_per_cluster)
    return centres[truth] + torch.randn(len(truth), dim, generator=generator), truth


def test_recovers_well_separated_blobs() -> None:
    x, truth = blobs()
    result = kmeans(x, 5, seed=0)
    assert isinstance(result, KMeansResult)
    assert result.centroids.shape == (5, 8) and result.labels.shape == (500,) and result.labels.dtype == torch.int64
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == pytest.approx(1.0)
    assert 1 <= result.n_iter <= 30


def test_inertia_within_one_percent_of_sklearn_on_digits() -> None:
    x = torch.from_numpy(load_digits().data).float()
    ours = kmeans(x, 10, n_init=3, seed=0)
    reference = SklearnKMeans(n_clusters=10, n_init=3, random_state=0).fit(x.numpy())
    assert ours.inertia <= reference.inertia_ * 1.01
    # The reported inertia is the sum of squared distances to the assigned centroids.
    recomputed = (x - ours.centroids[ours.labels]).square().sum().item()
    assert ours.inertia == pytest.approx(recomputed, rel=1e-4)


def test_same_seed_same_result_and_other_seed_differs() -> None:
    x = torch.from_numpy(load_digits().data).float()
    first, second = kmeans(x, 10, seed=3), kmeans(x, 10, seed=3)
    assert torch.equal(first.centroids, second.centroids) and torch.equal(first.labels, second.labels)
    assert first.inertia == second.inertia and first.n_iter == second.n_iter
    assert not torch.equal(first.centroids, kmeans(x, 10, seed=4).centroids)


def test_cosine_metric_clusters_directions() -> None:
    x, truth = blobs(k=4, dim=16, seed=1)
    # Scaling rows must not matter for cosine: cluster the directions.
    scales = torch.rand(len(x), 1, generator=torch.Generator().manual_seed(0)) * 9.0 + 1.0
    unit = torch.nn.functional.normalize(x, dim=1)
    result = kmeans(x * scales, 4, metric="cosine", seed=0)
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == pytest.approx(1.0)
    assert torch.allclose(result.centroids.norm(dim=1), torch.ones(4), atol=1e-5)
    expected = (1.0 - (unit * result.centroids[result.labels]).sum(dim=1)).sum().item()
    assert result.inertia == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_predict_matches_fit_labels_across_chunk_sizes(metric: str) -> None:
    x = torch.from_numpy(load_digits().data[:600]).double()
    result = kmeans(x, 8, metric=metric, chunk_size=97, seed=0)
    assert result.centroids.dtype == torch.float64
    assert torch.equal(kmeans_predict(x, result.centroids, metric=metric), result.labels)
    assert torch.equal(kmeans_predict(x, result.centroids, metric=metric, chunk_size=5), result.labels)


def test_k_equal_n_and_duplicate_points_leave_no_cluster_empty() -> None:
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [9.0, 1.0]])
    result = kmeans(x, 3, seed=0)
    assert result.labels.unique().numel() == 3
    assert result.inertia == pytest.approx(0.0, abs=1e-6)
    assert kmeans(x[2:], 3, seed=0).inertia == pytest.approx(0.0, abs=1e-6)


def test_integer_input_is_clustered_in_float32() -> None:
    result = kmeans(torch.tensor([[0, 0], [0, 1], [10, 10], [10, 11]]), 2)
    assert result.centroids.dtype == torch.float32
    assert result.inertia == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "k", "kwargs", "message"),
    [
        (torch.zeros(5), 2, {}, "2-D"),
        (torch.zeros(0, 3), 1, {}, "at least one point"),
        (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1, {}, "NaN or infinite"),
        (torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), 1, {}, "NaN or infinite"),
        (torch.zeros(4, 2), 5, {}, "exceeds the number of points"),
        (torch.zeros(4, 2), 0, {}, "positive integer"),
        (torch.zeros(4, 2), 2, {"metric": "manhattan"}, "unknown metric"),
        (torch.zeros(4, 2), 2, {"n_init": 0}, "n_init"),
        (torch.zeros(4, 2), 2, {"max_iter": 0}, "max_iter"),
        (torch.zeros(4, 2), 2, {"chunk_size": 0}, "chunk_size"),
        (torch.zeros(4, 2), 2, {"tol": -1.0}, "tol"),
    ],
)
def test_bad_input_raises_clear_value_error(x: torch.Tensor, k: int, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans(x, k, **kwargs)


def test_predict_rejects_mismatched_centroids() -> None:
    with pytest.raises(ValueError, match="centroids must be"):
        kmeans_predict(torch.zeros(4, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown metric"):
        kmeans_predict(torch.zeros(4, 2), torch.zeros(2, 2), metric="dot")  # type: ignore[arg-type]
