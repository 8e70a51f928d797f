"""GraphMAE through ssl-core's pipeline on real (Cora) and synthetic graphs, and the dataset errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_graph import GraphDataError, graphmae, planetoid, synthetic


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_cora_loads_offline_without_writing_to_the_data_folder(planetoid_root: Path) -> None:
    before = _files(planetoid_root)
    splits = planetoid(str(planetoid_root), dataset="cora")
    graph = splits.train[0]
    assert graph["x"].shape == (2708, 1433) and splits.num_classes == 7
    assert [int(graph[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == [140, 500, 1000]
    assert torch.allclose(graph["x"].sum(dim=1)[graph["x"].sum(dim=1) > 0], torch.ones(1))  # row-normalised
    assert _files(planetoid_root) == before


def test_unknown_planetoid_name_suggests_the_closest() -> None:
    with pytest.raises(GraphDataError, match=r"did you mean 'CiteSeer'"):
        planetoid(None, dataset="Citeseers")


def test_missing_raw_files_offline_name_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch_geometric.datasets.planetoid as pyg_planetoid

    def offline(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(pyg_planetoid.Planetoid, "download", offline)  # as when the machine is offline
    (tmp_path / "Cora" / "raw").mkdir(parents=True)
    with pytest.raises(GraphDataError, match=r"raw files missing in .*Cora/raw \(ind\.cora\.x, .*URLError"):
        planetoid(str(tmp_path), dataset="Cora")


def _short_graphmae(root: str, seed: int) -> ssl_core.RunResult:
    config = graphmae("Cora")
    config["seed"] = seed
    overrides = ["train.steps=100", "train.precision=auto", "train.progress=false", "plots=false", "train.log_every=10"]
    return ssl_core.run(config, overrides=overrides, root=root)


@pytest.mark.slow
def test_short_graphmae_on_cora_beats_random_init(planetoid_root: Path) -> None:
    result = _short_graphmae(str(planetoid_root), seed=0)
    pretrained = result.metrics["evaluations"]["graph.node_probe"]["accuracy"]
    random_init = result.metrics["random_init"]["graph.node_probe"]["accuracy"]
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert pretrained > random_init + 0.005, (pretrained, random_init)  # 100 of 1500 epochs


def test_graphmae_pipeline_on_synthetic_graph_learns(tmp_path: Path) -> None:
    config = {
        "seed": 0,
        "data": {"name": "graph.synthetic", "num_nodes": 400, "num_classes": 4, "in_dim": 16},
        "encoder": {"name": "graph.gat", "hidden_dim": 32, "heads": 4},
        "views": {"name": "graph.node_mask", "mask_rate": 0.5, "replace_rate": 0.1},
        "objective": {"name": "graph.graphmae", "alpha": 2.0},
        "train": {"steps": 40, "batch_size": 1, "lr": 0.01, "optimizer": "adam", "weight_decay": 0.0,
                  "log_every": 5, "progress": False, "checkpoint_every": 20},
        "evaluate": [{"name": "graph.node_probe", "epochs": 100}],
        "plots": False,
    }  # fmt: skip
    result = ssl_core.run(config, out=tmp_path / "run")
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert 0.0 <= result.metrics["evaluations"]["graph.node_probe"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_graph_too_large_for_one_batch_trains_on_neighbour_samples(tmp_path: Path) -> None:
    splits = synthetic(num_nodes=3000, in_dim=16, batch_nodes=128, num_neighbors=(5, 5))
    assert len(splits.pretrain) == 3000  # type: ignore[arg-type]
    config = {
        "seed": 0,
        "data": {"name": "graph.synthetic", "num_nodes": 3000, "in_dim": 16, "batch_nodes": 128,
                 "num_neighbors": [5, 5]},
        "encoder": {"name": "graph.gat", "hidden_dim": 32, "heads": 2},
        "views": {"name": "graph.node_mask"},
        "objective": {"name": "graph.graphmae"},
        "train": {"steps": 30, "batch_size": 128, "lr": 0.005, "optimizer": "adam", "log_every": 5,
                  "progress": False},
        "evaluate": [{"name": "graph.node_probe", "epochs": 50}],
        "plots": False,
    }  # fmt: skip
    result = ssl_core.run(config)
    rows = result.history
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["epoch"] == 1.0  # 3000 nodes / 128 seeds = 23 batches per epoch: the second epoch started
    assert "accuracy" in result.metrics["evaluations"]["graph.node_probe"]


def test_full_graph_with_a_batch_size_above_one_explains_itself() -> None:
    config = {
        "data": {"name": "graph.synthetic", "num_nodes": 100, "in_dim": 4},
        "encoder": {"name": "graph.gat", "hidden_dim": 8, "heads": 2},
        "views": {"name": "graph.node_mask"},
        "objective": {"name": "graph.graphmae"},
        "train": {"steps": 2, "batch_size": 8, "progress": False},
        "evaluate": [],
    }
    with pytest.raises(ssl_core.ConfigError, match=r"lower train.batch_size"):
        ssl_core.run(config)
