"""Recipes: the papers' hyper-parameters as pipeline mappings (``ssl run timeseries.ts2vec``).

Example:
    >>> ts2vec()["encoder"]["embed_dim"]
    320
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED_TS2VEC", "mvp", "ts2vec", "ts2vec_steps"]

PUBLISHED_TS2VEC: dict[str, float] = {
    "GunPoint": 0.980,
    "ArrowHead": 0.857,
    "ItalyPowerDemand": 0.925,
    "BasicMotions": 0.975,
}
"""TS2Vec's published test accuracies (Yue et al., AAAI 2022, appendix tables) for the bundled sets."""


def ts2vec_steps(num_values: int) -> int:
    """TS2Vec's default training length: 200 iterations up to 100,000 values (N*T*C) in the train split, else 600.

    Example:
        >>> ts2vec_steps(50 * 150), ts2vec_steps(1000 * 500)
        (200, 600)
    """
    return 200 if num_values <= 100_000 else 600


def ts2vec(dataset: str = "GunPoint") -> dict[str, Any]:
    """TS2Vec on a UCR/UEA problem: repr 320, hidden 64, depth 10, batch 8, lr 1e-3 (constant), 200 iterations.

    Use ``train.steps = 600`` for problems with more than 100,000 values in the train
    split (:func:`ts2vec_steps`); evaluation is TS2Vec's SVM protocol. No warm-up (a
    constant learning rate), so ``--set train.steps=...`` leaves nothing stale.

    Args:
        dataset: the UCR/UEA problem (``ssl run timeseries.ts2vec --recipe dataset=ArrowHead``);
            also names the run.

    Example:
        >>> cfg = ts2vec("ArrowHead")
        >>> cfg["name"], cfg["data"]["dataset"], cfg["train"]["steps"]
        ('ts2vec-ArrowHead', 'ArrowHead', 200)
    """
    return {
        "name": f"ts2vec-{dataset}",
        "seed": 0,
        "data": {"name": "timeseries.ucr", "dataset": dataset},
        "encoder": {"name": "timeseries.ts2vec", "embed_dim": 320, "hidden_dim": 64, "depth": 10},
        "views": {"name": "timeseries.crops", "mask": "binomial"},
        "objective": {"name": "timeseries.ts2vec", "alpha": 0.5, "temporal_unit": 0},
        "train": {
            "steps": 200,
            "batch_size": 8,
            "lr": 1e-3,
            "min_lr_ratio": 1.0,  # constant learning rate, as TS2Vec
            "weight_decay": 0.01,
            "log_every": 10,
        },
        "evaluate": [{"name": "timeseries.svm"}],
    }


def mvp(dataset: str = "GunPoint") -> dict[str, Any]:
    """tsai's MVP (masked value prediction) with a TSTPlus encoder: 15% of values in runs of mean length 3.

    Batch 16, constant lr 1e-3 (no warm-up), 200 steps; evaluated with ``timeseries.svm``
    and ``core.linear_probe``.

    Args:
        dataset: the UCR/UEA problem (``ssl run timeseries.mvp --recipe dataset=BasicMotions``).

    Example:
        >>> cfg = mvp("BasicMotions")
        >>> cfg["name"], cfg["views"]["mask_ratio"], cfg["encoder"]["name"]
        ('mvp-BasicMotions', 0.15, 'timeseries.tst')
    """
    return {
        "name": f"mvp-{dataset}",
        "seed": 0,
        "data": {"name": "timeseries.ucr", "dataset": dataset},
        "encoder": {"name": "timeseries.tst", "d_model": 128, "n_layers": 3, "n_heads": 16, "d_ff": 256},
        "views": {"name": "timeseries.subsequence_mask", "mask_ratio": 0.15, "mean_length": 3.0},
        "objective": {"name": "timeseries.mvp"},
        "train": {
            "steps": 200,
            "batch_size": 16,
            "lr": 1e-3,
            "min_lr_ratio": 1.0,
            "weight_decay": 0.01,
            "log_every": 10,
        },
        "evaluate": [{"name": "timeseries.svm"}, {"name": "core.linear_probe"}],
    }
