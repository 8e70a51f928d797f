"""PNG plots of a run: the loss curve, the online monitors, and a 2-D projection of test embeddings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MIN_POINTS", "PCA_DIM", "plot_embeddings", "plot_loss", "plot_monitors"]


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_loss(history: Sequence[dict[str, float]], path: Path, *, title: str = "pretraining loss") -> Path:
    """Save the loss (and learning rate, on a second axis) against the step.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "loss.png"
        >>> p = plot_loss([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], out)
        >>> p.exists()
        True
    """
    plt = _pyplot()
    steps = [row["step"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(steps, [row["loss"] for row in history], color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if history and "lr" in history[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [row.get("lr", np.nan) for row in history], color="tab:orange", alpha=0.6, label="lr")
        ax2.set_ylabel("learning rate", color="tab:orange")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_monitors(monitors: dict[str, object], path: Path, *, title: str = "online monitors") -> Path | None:
    """One panel per monitor curve (``metrics.json["monitors"]``) over steps, alarms as red lines; ``None`` if empty.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "monitor.png"
        >>> history = {"steps": [50, 100], "curves": {"monitor/rankme": [30.0, 5.0]},
        ...            "alarms": [{"step": 100, "rule": "rankme_drop", "message": "..."}]}
        >>> plot_monitors(history, out).exists()
        True
    """
    steps = list(monitors.get("steps", []))  # type: ignore[call-overload]
    curves: dict[str, list[float | None]] = dict(monitors.get("curves", {}))  # type: ignore[call-overload]
    if not steps or not curves:
        return None
    plt = _pyplot()
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), dpi=110, squeeze=False)
    alarms = list(monitors.get("alarms", []))  # type: ignore[call-overload]
    for ax, (name, values) in zip(axes.flat, sorted(curves.items()), strict=False):
        ax.plot(steps, [np.nan if v is None else v for v in values], marker="o", markersize=3)
        for alarm in alarms:
            ax.axvline(alarm["step"], color="tab:red", alpha=0.5, linestyle="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="y", useOffset=False)  # a flat curve (a collapsed codebook) reads flat
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    fired = ", ".join(f"{a['rule']} at {a['step']}" for a in alarms)
    fig.suptitle(title + (f" (alarms: {fired})" if fired else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


PCA_DIM = 50
"""Features wider than this are reduced by PCA before t-SNE (at most to the number of points)."""

MIN_PERPLEXITY = 5.0
"""The bottom of t-SNE's usual perplexity range (5 to 50); fewer points than this needs give a warning."""

MIN_POINTS = 3
"""Fewer test points than this are drawn without a projection (t-SNE needs perplexity < points)."""


def _projection(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``x`` ``[N, D]`` and a name for them; warns when the projection means little."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n, dim = x.shape
    if n < MIN_POINTS:
        warnings.warn(
            f"plot_embeddings: only {n} test sample(s); the t-SNE projection was skipped and the points are "
            "drawn at their first two feature values",
            UserWarning,
            stacklevel=3,
        )
        xy = np.zeros((n, 2))
        xy[:, : min(2, dim)] = x[:, : min(2, dim)]
        return xy, "first two features"
    if dim > PCA_DIM:  # PCA first, to at most as many components as there are points
        x = PCA(n_components=min(PCA_DIM, n), svd_solver="full", random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(2, (n - 1) // 3), n - 1))  # t-SNE needs perplexity < n
    if perplexity < MIN_PERPLEXITY:
        warnings.warn(
            f"plot_embeddings: only {n} test samples, so the t-SNE perplexity is {perplexity:g} (usually 5 to 50); "
            "the projection means little",
            UserWarning,
            stacklevel=3,
        )
    init = "pca" if x.shape[1] >= 2 else "random"  # the PCA start needs two feature columns
    tsne = TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed)
    return tsne.fit_transform(x), "t-SNE"


def plot_embeddings(
    features: np.ndarray,
    labels: np.ndarray,
    path: Path,
    *,
    title: str = "test embeddings",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """Save a 2-D t-SNE (PCA to 50-d first) of ``features`` coloured by ``labels``.

    Small splits adapt instead of failing: PCA keeps at most as many components as there
    are points, the t-SNE perplexity stays below the number of points (with a warning
    under 5), and fewer than :data:`MIN_POINTS` points are drawn unprojected (with a warning).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "embeddings.png"
        >>> rng = np.random.default_rng(0)
        >>> plot_embeddings(rng.normal(size=(40, 64)), np.arange(40) % 2, out).exists()
        True
    """
    plt = _pyplot()
    features = np.asarray(features)
    labels = np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"plot_embeddings expects [N, D] features and [N] labels, got {features.shape} and {labels.shape}"
        )
    rng = np.random.default_rng(seed)
    if len(features) > max_points:
        keep = rng.choice(len(features), size=max_points, replace=False)
        features, labels = features[keep], labels[keep]
    xy, projection = _projection(features.astype(np.float64), seed)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    top = int(labels.max()) if len(labels) else 0
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10" if top < 10 else "tab20", s=6)
    ax.set_title(title if projection == "t-SNE" else f"{title} ({projection}: too few samples to project)")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(labels) and top < 20:
        ax.legend(*scatter.legend_elements(), loc="best", fontsize=6, title="class", title_fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
