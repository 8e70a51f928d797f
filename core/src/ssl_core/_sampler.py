"""Length-bucketed batching for variable-length inputs (sequences, audio, time series, graphs)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["LengthBucketBatchSampler", "dataset_lengths"]


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batch sampler grouping items of similar length so that batches need little padding.

    Items are sorted by length (ties broken randomly per epoch when ``shuffle``) and cut
    into consecutive batches of at most ``batch_size`` items and at most ``max_tokens``
    padded tokens (``len(batch) * longest_item``); at least one of the two limits is
    required. An item longer than ``max_tokens`` forms a batch on its own. The order of
    the batches is shuffled per epoch (call :meth:`set_epoch`), deterministically for a
    given ``seed``.

    With ``num_replicas > 1`` every replica gets the same number of batches, taking every
    ``num_replicas``-th batch from a common order: with ``drop_last=False`` up to
    ``num_replicas - 1`` batches are repeated to even the count; with ``drop_last=True``
    the surplus batches are dropped instead, as is a final batch smaller than
    ``batch_size``.

    Use it as ``DataLoader(dataset, batch_sampler=sampler, collate_fn=...)``.

    Example:
        >>> sampler = LengthBucketBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, shuffle=False)
        >>> list(sampler)
        [[1, 3], [4, 2], [0, 5]]
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = None,
        *,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size is None and max_tokens is None:
            raise ValueError("give batch_size, max_tokens, or both")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=} {rank=}")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if self.lengths.size and self.lengths.min() < 0:
            raise ValueError("lengths must be >= 0")
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        # Batch boundaries depend only on the sorted length sequence, which is the same
        # whatever the tie order, so they are computed once.
        self._bounds = self._batch_bounds(np.sort(self.lengths, kind="stable"))
        self._num_batches = self._batches_per_replica(len(self._bounds))

    def _batch_bounds(self, sorted_lengths: np.ndarray) -> list[tuple[int, int]]:
        bounds: list[tuple[int, int]] = []
        start = 0
        n = len(sorted_lengths)
        for i in range(n):
            size = i - start + 1
            too_many = self.batch_size is not None and size > self.batch_size
            too_long = self.max_tokens is not None and size > 1 and size * int(sorted_lengths[i]) > self.max_tokens
            if too_many or too_long:
                bounds.append((start, i))
                start = i
        if start < n:
            last = (start, n)
            if not (self.drop_last and self.batch_size is not None and n - start < self.batch_size):
                bounds.append(last)
        return bounds

    def _batches_per_replica(self, total: int) -> int:
        if self.drop_last:
            return total // self.num_replicas
        return -(-total // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle :meth:`__iter__` produces; call it before each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches this replica yields per epoch."""
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this replica's batches of dataset indices for the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        if self.shuffle:
            tie_break = rng.permutation(n)
            order = tie_break[np.argsort(self.lengths[tie_break], kind="stable")]
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[a:b] for a, b in self._bounds]
        batch_order = rng.permutation(len(batches)) if self.shuffle else np.arange(len(batches))
        wanted = self._num_batches * self.num_replicas
        if wanted > len(batch_order) and len(batch_order):
            repeats = -(-wanted // len(batch_order))
            batch_order = np.tile(batch_order, repeats)
        batch_order = batch_order[:wanted]
        for j in batch_order[self.rank :: self.num_replicas]:
            yield batches[int(j)].tolist()


def dataset_lengths(dataset: Any) -> list[int] | None:
    """Per-item lengths when the dataset offers them (``dataset.lengths()``), else ``None``.

    Variable-length datasets (audio, sequences) expose ``lengths()`` so that batches can
    be bucketed by length (:class:`~ssl_core.LengthBucketBatchSampler`).
    """
    method = getattr(dataset, "lengths", None)
    if not callable(method):
        return None
    lengths = [int(v) for v in method()]
    return lengths if len(lengths) == len(dataset) else None
