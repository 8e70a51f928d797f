"""Datasets that decode from disk in DataLoader workers: the contract the training loop honours.

A dataset provider may return map-style datasets that decode each item in ``__getitem__``
(a manifest of audio files, a folder of JPEGs) instead of tensors held in memory. The loop
then:

- gives the loader workers when the dataset declares ``decodes_lazily = True`` and
  ``train.num_workers`` is left unset (:func:`resolve_num_workers`);
- calls ``dataset.set_epoch(epoch)`` (when defined) before each epoch's loader starts, so
  per-item randomness can depend on the epoch; with :func:`sample_generator` it depends on
  ``(seed, epoch, index)`` only, never on which worker decoded the item, so a run resumed
  mid-epoch draws the same crops;
- skips items returned as :class:`SkippedItem` (a corrupt or missing file): each is named
  in a warning, counted, and listed in ``metrics.json`` (``data.skipped_in_training``).
  Evaluation does the same (``data.skipped_in_evaluation``): in both, the names travel
  with the batch from the worker (:func:`skipping_collate`) and the main process warns.

Example:
    >>> g1, g2 = sample_generator(0, 3, 17), sample_generator(0, 3, 17)
    >>> bool(torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2)))
    True
    >>> collate = skipping_collate(lambda items: {"x": torch.tensor(items)})
    >>> batch = collate([1.0, SkippedItem("bad.wav", "truncated"), 2.0])
    >>> batch["x"].tolist(), batch[SKIPPED_KEY]
    ([1.0, 2.0], ['bad.wav (truncated)'])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch

__all__ = [
    "SKIPPED_KEY",
    "SkippedItem",
    "resolve_num_workers",
    "sample_generator",
    "set_epoch",
    "skipping_collate",
    "warning_collate",
]

SKIPPED_KEY: Final = "_skipped"
"""Batch key under which :func:`skipping_collate` reports the items it dropped (the loop removes it)."""


@dataclass(frozen=True)
class SkippedItem:
    """What ``__getitem__`` returns for an item it cannot decode: the file's name and why."""

    name: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})" if self.reason else self.name


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, index)``: per-item randomness that survives workers and resume."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) * 2_147_483_647 + index & 0x7FFF_FFFF_FFFF_FFFF)
    return generator


def skipping_collate(collate: Callable[[Sequence[Any]], Any]) -> Callable[[Sequence[Any]], Any]:
    """``collate`` that drops :class:`SkippedItem` entries and lists them under :data:`SKIPPED_KEY`.

    The names travel with the batch to the process that reads it (from a DataLoader worker
    to the main process), which warns and counts. A batch made only of skipped items
    becomes ``{SKIPPED_KEY: [...]}`` alone. A ``collate`` that returns something other than
    a dict cannot carry the names: they are warned about where they were dropped.
    """

    def collate_kept(items: Sequence[Any]) -> Any:
        skipped = [str(item) for item in items if isinstance(item, SkippedItem)]
        if not skipped:
            return collate(items)
        kept = [item for item in items if not isinstance(item, SkippedItem)]
        batch = collate(kept) if kept else {}
        if isinstance(batch, dict):
            batch[SKIPPED_KEY] = skipped
        else:
            for name in skipped:
                warnings.warn(f"skipped an item the dataset could not read: {name}", stacklevel=2)
        return batch

    return collate_kept


def warning_collate(collate: Callable[[Sequence[Any]], Any]) -> Callable[[Sequence[Any]], Any]:
    """``collate`` that drops :class:`SkippedItem` entries with a warning naming each, where it runs.

    In a DataLoader worker that warning never reaches the user; evaluation uses
    :func:`skipping_collate` and warns in the main process instead. Kept for callers of 1.0.
    """

    def collate_kept(items: Sequence[Any]) -> Any:
        for item in items:
            if isinstance(item, SkippedItem):
                warnings.warn(f"skipped an item the dataset could not read: {item}", stacklevel=2)
        return collate([item for item in items if not isinstance(item, SkippedItem)])

    return collate_kept


def set_epoch(dataset: Any, epoch: int) -> None:
    """Tell a dataset which epoch starts (``dataset.set_epoch``), when it wants to know."""
    method = getattr(dataset, "set_epoch", None)
    if callable(method):
        method(epoch)


def resolve_num_workers(requested: int | None, dataset: Any) -> int:
    """``requested``, or when unset: a few workers for datasets that decode lazily, none for in-memory ones.

    Example:
        >>> resolve_num_workers(None, [1, 2, 3]), resolve_num_workers(3, [1, 2, 3])
        (0, 3)
    """
    if requested is not None:
        return requested
    if not getattr(dataset, "decodes_lazily", False):
        return 0
    return min(4, max(1, (os.cpu_count() or 2) - 1))
