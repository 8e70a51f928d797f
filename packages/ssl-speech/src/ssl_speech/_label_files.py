"""HuBERT label files: save, load and attach frame targets to a dataset's samples.

Every speech dataset provider takes ``labels = PATH`` the same way: it is decorated with
:func:`takes_label_file`, which adds the keyword to the provider's signature (so the
pipeline's parameter check and ``--set data.labels=PATH`` accept it), builds the splits,
then attaches the file's frame targets with :func:`attach_labels` (utterance counts
checked per split; the frame lengths are checked per utterance by ``speech.hubert``).

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

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ssl_core import DatasetSplits, save_checkpoint

__all__ = ["attach_label_file", "attach_labels", "load_labels", "save_labels", "takes_label_file"]


def save_labels(labels: dict[str, Any], path: str | Path) -> Path:
    """Write labels atomically (ssl-core's :func:`~ssl_core.save_checkpoint`: temporary file, fsync, rename)."""
    return save_checkpoint(path, labels)


def load_labels(path: str | Path) -> dict[str, Any]:
    """Read labels written by :func:`save_labels`.

    Raises:
        ValueError: no file at ``path``, or it is not a HuBERT label file.
    """
    if not Path(path).is_file():
        raise ValueError(f"no HuBERT label file at {path}; write one with `ssl hubert-labels --out {path}`")
    labels: dict[str, Any] = torch.load(Path(path), weights_only=False)
    missing = [k for k in ("train", "test", "num_clusters") if k not in labels]
    if missing:
        raise ValueError(f"{path} is not a HuBERT label file (missing {', '.join(missing)})")
    return labels


def attach_labels(
    splits: DatasetSplits, labels: dict[str, Any], key: str = "targets", source: str | Path | None = None
) -> DatasetSplits:
    """Add each utterance's frame labels to its samples under ``key`` (checks the utterance counts).

    ``source`` (the label file's path) is named in the error when the counts differ.

    Raises:
        ValueError: a split has another number of utterances than the label file has for it.
    """
    for name in ("train", "test"):
        dataset = getattr(splits, name)
        column = labels[name]
        if len(column) != len(dataset):
            where = f" {source}" if source is not None else ""
            raise ValueError(
                f"the label file{where} has {len(column)} {name} utterances but the dataset has {len(dataset)}; "
                "it was made from another dataset or other settings: make the labels from the same dataset "
                "settings (ssl hubert-labels --data NAME --root DIR --option KEY=VALUE ...)"
            )
    for name in ("train", "test"):
        getattr(splits, name).labels[key] = [c.long() for c in labels[name]]
    splits.info["num_clusters"] = int(labels["num_clusters"])
    return splits


def attach_label_file(splits: DatasetSplits, path: str | Path | None) -> DatasetSplits:
    """Load the label file at ``path`` and attach it to ``splits`` (unchanged when ``path`` is ``None``)."""
    if path is None:
        return splits
    attach_labels(splits, load_labels(path), source=path)
    splits.info["label_file"] = str(path)
    return splits


def takes_label_file(provider: Callable[..., DatasetSplits]) -> Callable[..., DatasetSplits]:
    """Give a speech dataset provider the keyword ``labels = PATH`` (a HuBERT label file), handled here.

    The wrapper's signature is the provider's plus a keyword-only ``labels: str | None = None``
    (so ``build_component``'s parameter check and ``--set data.labels=PATH`` accept it); it
    calls the provider without it and then :func:`attach_label_file`. The provider itself
    knows nothing of label files.

    Example:
        >>> import inspect, torch
        >>> from ssl_core import DatasetSplits
        >>> from ssl_speech import AudioDataset, collate_audio
        >>> @takes_label_file
        ... def tiny(n: int = 2) -> DatasetSplits:
        ...     waves = AudioDataset([torch.zeros(800)] * n, {})
        ...     return DatasetSplits(train=waves, test=AudioDataset([], {}), collate=collate_audio, modality="audio")
        >>> str(inspect.signature(tiny))
        "(n: 'int' = 2, *, labels: 'str | None' = None) -> 'DatasetSplits'"
        >>> tiny().train.labels
        {}
    """
    signature = inspect.signature(provider)
    if "labels" in signature.parameters:
        raise TypeError(f"{provider.__qualname__} already has a 'labels' parameter")
    parameters = list(signature.parameters.values())
    at = next((i for i, p in enumerate(parameters) if p.kind is p.VAR_KEYWORD), len(parameters))
    parameters.insert(at, inspect.Parameter("labels", inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation="str | None"))  # fmt: skip

    @functools.wraps(provider)
    def with_labels(*args: Any, labels: str | None = None, **kwargs: Any) -> DatasetSplits:
        return attach_label_file(provider(*args, **kwargs), labels)

    with_labels.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_labels.__annotations__ = {**provider.__annotations__, "labels": "str | None"}
    return with_labels
