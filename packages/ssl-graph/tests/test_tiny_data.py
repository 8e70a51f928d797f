"""Tiny data (issue 18): graph.node_probe and graph.svm adapt to small splits; GraphMAE end to end on 28 nodes."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_core import DatasetSplits, Registry, run
from ssl_graph import GINEncoder, GraphSVMEvaluator, collate_graphs, graph_batch, node_probe, synthetic


class _Graph:
    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor) -> None:
        self.x, self.edge_index = x, edge_index


def graphs(labels: list[int], seed: int = 0) -> dict[str, Any]:
    """One collated batch of small ring graphs whose node features sit near their class's centre."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i, label in enumerate(labels):
        n = 4 + i % 3
        ring = torch.arange(n)
        edges = torch.stack([ring, (ring + 1) % n])
        x = 3.0 * label + 0.3 * torch.randn(n, 5, generator=g)
        sample = graph_batch(_Graph(x, torch.cat([edges, edges.flip(0)], dim=1)))
        sample["y"] = torch.tensor(label)
        samples.append(sample)
    return collate_graphs(samples)


def messages(caught: list[warnings.WarningMessage]) -> str:
    return "\n".join(str(w.message) for w in caught)


# ---------------------------------------------------------------- graph.node_probe


def probe_inputs(train: list[int], val: list[int], test: list[int]) -> tuple[torch.Tensor, ...]:
    """Separable 3-d embeddings of 12 nodes (class = node index % 3) and the given masks."""
    labels = torch.arange(12) % 3
    noise = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    embeddings = torch.nn.functional.one_hot(labels, 3).float() + 0.05 * noise
    masks = []
    for chosen in (train, val, test):
        mask = torch.zeros(12, dtype=torch.bool)
        mask[chosen] = True
        masks.append(mask)
    return (embeddings, labels, *masks)


def test_node_probe_with_fewer_train_nodes_than_classes() -> None:
    # two train nodes (classes 0 and 1) for three classes: class 2 can never be predicted
    with pytest.warns(UserWarning, match=r"graph\.node_probe: 2 train samples for 3 classes; test class 2 has"):
        scores = node_probe(*probe_inputs([0, 1], [3, 4, 5], [6, 7, 8]), epochs=50)
    assert 0.0 <= scores["accuracy"] <= 2 / 3 + 1e-6  # float32 mean


def test_node_probe_without_validation_nodes_scores_the_last_epoch() -> None:
    with pytest.warns(UserWarning, match=r"graph\.node_probe: val_mask selects no node"):
        scores = node_probe(*probe_inputs([0, 1, 2, 3, 4, 5], [], [6, 7, 8]), epochs=100)
    assert scores["accuracy"] == scores["final_accuracy"] and math.isnan(scores["val_accuracy"])


def test_node_probe_without_test_nodes_reports_nan() -> None:
    with pytest.warns(UserWarning, match=r"graph\.node_probe: test_mask selects no node"):
        scores = node_probe(*probe_inputs([0, 1, 2], [3, 4, 5], []), epochs=10)
    assert math.isnan(scores["accuracy"]) and math.isnan(scores["final_accuracy"])
    with pytest.raises(ValueError, match="train_mask selects no node"):
        node_probe(*probe_inputs([], [3], [4]), epochs=10)


def test_node_probe_on_an_adequate_split_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node_probe(*probe_inputs([0, 1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11]), epochs=10)


# ---------------------------------------------------------------- graph.svm


def test_graph_svm_reduces_folds_to_the_smallest_class() -> None:
    # 3 graphs per class and folds=10: 3-fold cross-validation; inner searches see 2 per class
    encoder = GINEncoder(in_dim=5, hidden_dim=8)
    with pytest.warns(UserWarning, match=r"graph\.svm: the smallest class has 3 graphs, fewer than folds=10; using 3"):
        scores = GraphSVMEvaluator()(encoder, [graphs([0, 1] * 3)], [])
    assert 0.0 <= scores["accuracy"] <= 1.0 and scores["accuracy_std"] >= 0.0


def test_graph_svm_with_two_graphs_in_a_class_fits_plain_svms_in_folds() -> None:
    encoder = GINEncoder(in_dim=5, hidden_dim=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = GraphSVMEvaluator()(encoder, [graphs([0, 1, 0, 1, 1])], [])
    text = messages(caught)
    assert "using 2-fold cross-validation" in text and "plain SVC(C=1)" in text
    assert 0.0 <= scores["accuracy"] <= 1.0


def test_graph_svm_with_one_graph_per_class_falls_back_to_a_plain_fit() -> None:
    encoder = GINEncoder(in_dim=5, hidden_dim=8)
    with pytest.warns(UserWarning, match=r"graph\.svm: a class has a single graph, so no cross-validation"):
        scores = GraphSVMEvaluator()(encoder, [graphs([0, 1])], [])
    assert 0.0 <= scores["accuracy"] <= 1.0 and scores["accuracy_std"] == 0.0


def test_graph_svm_with_a_single_class() -> None:
    encoder = GINEncoder(in_dim=5, hidden_dim=8)
    with pytest.warns(UserWarning, match=r"graph\.svm: the train split holds a single class"):
        scores = GraphSVMEvaluator()(encoder, [graphs([1, 1, 1])], [])
    assert scores == {"accuracy": 1.0, "accuracy_std": 0.0}


def test_graph_svm_with_enough_graphs_does_not_warn() -> None:
    encoder = GINEncoder(in_dim=5, hidden_dim=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        GraphSVMEvaluator(folds=2)(encoder, [graphs([0, 1] * 4)], [])


# ---------------------------------------------------------------- GraphMAE end to end on a tiny graph


def tiny_graph(root: str | None = None, train_per_class: int = 8, test_per_class: int = 4) -> DatasetSplits:
    """``graph.synthetic``'s 28-node, 2-class graph with 8 + 8 train, 4 + 4 test and the rest validation nodes."""
    splits = synthetic(num_nodes=28, num_classes=2, in_dim=8, avg_degree=4.0, seed=1)
    graph = dict(splits.train[0])
    y = graph["y"]
    masks = {name: torch.zeros_like(y, dtype=torch.bool) for name in ("train_mask", "val_mask", "test_mask")}
    for c in range(2):
        members = torch.nonzero(y == c).flatten()
        masks["train_mask"][members[:train_per_class]] = True
        masks["test_mask"][members[train_per_class : train_per_class + test_per_class]] = True
        masks["val_mask"][members[train_per_class + test_per_class :]] = True
    graph.update(masks)
    return dataclasses.replace(splits, train=[graph], test=[graph])  # type: ignore[list-item]


def test_graphmae_recipe_runs_end_to_end_on_a_tiny_graph(tmp_path: Path) -> None:
    registry = Registry()
    registry.register("dataset", "test.tiny_graph", tiny_graph)
    graph = tiny_graph().train[0]
    assert int(graph["train_mask"].sum()) == 16 and int(graph["test_mask"].sum()) == 8
    overrides = ["train.steps=2", "train.progress=false", "plots=true", "encoder.hidden_dim=16", "encoder.heads=2",
                 'data={name="test.tiny_graph"}', "evaluate.0.epochs=20"]  # fmt: skip
    out = tmp_path / "run"
    result = run("graph.graphmae", overrides=overrides, out=out, registry=registry)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["evaluations"]["graph.node_probe"]["accuracy"] <= 1.0
    assert result.metrics["evaluations"]["graph.node_probe"]
    assert (out / "loss.png").is_file() and (out / "embeddings.png").is_file()
