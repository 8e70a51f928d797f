"""PNG plots of a run: the loss curve and a 2-D projection of test embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_embeddings", "plot_loss"]


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


def plot_embeddings(
    features: np.ndarray,
    labels: np.ndarray,
    path: Path,
    *,
    title: str = "test embeddings",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """Save a 2-D t-SNE (PCA to 50-d first) of ``features`` coloured by ``labels``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    if len(features) > max_points:
        keep = rng.choice(len(features), size=max_points, replace=False)
        features, labels = features[keep], labels[keep]
    x = features.astype(np.float64)
    if x.shape[1] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10" if labels.max() < 10 else "tab20", s=6)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels.max() < 20:
        ax.legend(*scatter.legend_elements(), loc="best", fontsize=6, title="class", title_fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
