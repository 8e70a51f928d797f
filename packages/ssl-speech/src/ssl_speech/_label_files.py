"""HuBERT label files: save, load and attach frame targets to a dataset's samples.

Kept apart from :mod:`._labels` (which makes the labels and needs :mod:`._data`) so that
the datasets' ``labels = PATH`` option can read a file without an import cycle.

Example:
    >>> import tempfile, os, torch
    >>> labels = {"train": [torch.zeros(3, dtype=torch.int16)], "test": [], "num_clusters": 2}
    >>> path = save_labels(labels, os.path.join(tempfile.mkdtemp(), "labels.pt"))
    >>> load_labels(path)["num_clusters"]
    2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_core import DatasetSplits, save_checkpoint

__all__ = ["attach_labels", "load_labels", "save_labels"]


def save_labels(labels: dict[str, Any], path: str | Path) -> Path:
    """Write labels atomically (ssl-core's :func:`~ssl_core.save_checkpoint`: temporary file, fsync, rename)."""
    return save_checkpoint(path, labels)


def load_labels(path: str | Path) -> dict[str, Any]:
    """Read labels written by :func:`save_labels`."""
    labels: dict[str, Any] = torch.load(Path(path), weights_only=False)
    missing = [k for k in ("train", "test", "num_clusters") if k not in labels]
    if missing:
        raise ValueError(f"{path} is not a HuBERT label file (missing {', '.join(missing)})")
    return labels


def attach_labels(splits: DatasetSplits, labels: dict[str, Any], key: str = "targets") -> DatasetSplits:
    """Add each utterance's frame labels to its samples under ``key`` (checks the utterance counts)."""
    for name in ("train", "test"):
        dataset = getattr(splits, name)
        column = labels[name]
        if len(column) != len(dataset):
            raise ValueError(
                f"the label file has {len(column)} {name} utterances but the dataset has {len(dataset)}; "
                "make the labels from the same dataset settings"
            )
        dataset.labels[key] = [c.long() for c in column]
    splits.info["num_clusters"] = int(labels["num_clusters"])
    return splits
