"""Recipes: GraphMAE's published per-dataset hyper-parameters as pipeline mappings.

Example:
    >>> graphmae()["train"]["steps"]
    1500
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRAPHMAE_PAPER", "PUBLISHED_GRAPHMAE", "graphmae", "graphmae_memmap"]

GRAPHMAE_PAPER: dict[str, dict[str, Any]] = {
    "Cora": {
        "hidden": 512,
        "heads": 4,
        "lr": 1e-3,
        "wd": 2e-4,
        "epochs": 1500,
        "mask": 0.5,
        "replace": 0.05,
        "alpha": 3.0,
        "probe_wd": 1e-4,
    },
    "CiteSeer": {
        "hidden": 512,
        "heads": 2,
        "lr": 1e-3,
        "wd": 2e-5,
        "epochs": 300,
        "mask": 0.5,
        "replace": 0.1,
        "alpha": 1.0,
        "probe_wd": 1e-2,
    },
    "PubMed": {
        "hidden": 1024,
        "heads": 4,
        "lr": 1e-3,
        "wd": 1e-5,
        "epochs": 1000,
        "mask": 0.75,
        "replace": 0.0,
        "alpha": 3.0,
        "probe_wd": 1e-4,
    },
}
"""GraphMAE's ``configs.yml`` (THUDM/GraphMAE) for the Planetoid graphs; all use a 2-layer GAT, PReLU,
input dropout 0.2, attention dropout 0.1, Adam, cosine learning-rate decay, probe lr 0.01 for 300 epochs."""

PUBLISHED_GRAPHMAE: dict[str, tuple[float, float]] = {
    "Cora": (84.2, 0.4),
    "CiteSeer": (73.4, 0.4),
    "PubMed": (81.1, 0.4),
}
"""GraphMAE's published node-classification accuracy (mean, std over 20 seeds), Hou et al., KDD 2022, Table 1."""


def graphmae(dataset: str = "Cora") -> dict[str, Any]:
    """GraphMAE on a Planetoid graph with the paper's hyper-parameters (Cora: 1500 full-graph epochs).

    One training step is one full-graph epoch; no warm-up (cosine decay over ``train.steps``,
    so ``--set train.steps=...`` leaves nothing stale). Pass the data folder with ``--root``
    (e.g. ``../shared/data/planetoid``); without it the graph is downloaded to
    ``~/.cache/ssl-graph``.

    Args:
        dataset: ``"Cora"``, ``"CiteSeer"`` or ``"PubMed"``: picks the graph *and* that
            graph's published hyper-parameters (``ssl run graph.graphmae --recipe dataset=CiteSeer``;
            ``--set data.dataset=...`` would keep Cora's).

    Example:
        >>> cfg = graphmae("CiteSeer")
        >>> cfg["data"]["dataset"], cfg["views"]["replace_rate"], cfg["train"]["steps"]
        ('CiteSeer', 0.1, 300)
    """
    if dataset not in GRAPHMAE_PAPER:
        raise ValueError(f"graph.graphmae has presets for {', '.join(GRAPHMAE_PAPER)}, not {dataset!r}")
    p = GRAPHMAE_PAPER[dataset]
    return {
        "name": f"graphmae-{dataset}",
        "seed": 0,
        "data": {"name": "graph.planetoid", "dataset": dataset},
        "encoder": {"name": "graph.gat", "hidden_dim": p["hidden"], "heads": p["heads"], "num_layers": 2},
        "views": {"name": "graph.node_mask", "mask_rate": p["mask"], "replace_rate": p["replace"]},
        "objective": {"name": "graph.graphmae", "alpha": p["alpha"]},
        "train": {
            "steps": p["epochs"],
            "batch_size": 1,
            "lr": p["lr"],
            "optimizer": "adam",
            "weight_decay": p["wd"],
            "decay_bias_and_norm": True,
            "min_lr_ratio": 0.0,
            "log_every": 50,
        },
        "evaluate": [{"name": "graph.node_probe", "lr": 0.01, "weight_decay": p["probe_wd"], "epochs": 300}],
    }


def graphmae_memmap(batch_nodes: int = 512, steps: int = 1000, hidden_dim: int = 256) -> dict[str, Any]:
    """GraphMAE on a large graph folder (``graph.memmap``): neighbour-sampled mini-batches, features memory-mapped.

    Each step takes ``batch_nodes`` seed nodes and their sampled 2-hop neighbourhood
    (10 neighbours per hop, one hop per GAT layer); the mask is drawn over all sampled
    nodes. Cora's GraphMAE settings otherwise (mask 0.5, replace 0.05, alpha 3, Adam at
    1e-3), a CPU-sized encoder (``hidden_dim`` 256, 4 heads). The node probe embeds the
    sampled neighbourhood of 2,000 random labelled nodes. Pass the folder with ``--root``
    (``ssl graph-synthetic DIR`` writes one).

    Example:
        >>> cfg = graphmae_memmap(batch_nodes=1024)
        >>> cfg["data"]["name"], cfg["train"]["batch_size"]
        ('graph.memmap', 1024)
    """
    return {
        "name": "graphmae-memmap",
        "seed": 0,
        "data": {"name": "graph.memmap", "num_neighbors": [10, 10]},
        "encoder": {"name": "graph.gat", "hidden_dim": hidden_dim, "heads": 4, "num_layers": 2},
        "views": {"name": "graph.node_mask", "mask_rate": 0.5, "replace_rate": 0.05},
        "objective": {"name": "graph.graphmae", "alpha": 3.0},
        "train": {
            "steps": steps,
            "batch_size": batch_nodes,
            "lr": 1e-3,
            "optimizer": "adam",
            "weight_decay": 0.0,
            "min_lr_ratio": 0.0,
            "log_every": 10,
        },
        "evaluate": [{"name": "graph.node_probe", "lr": 0.01, "weight_decay": 1e-4, "epochs": 300}],
    }
