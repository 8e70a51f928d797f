"""Conformance tests for dataset providers: ``provider(root=None, **options) -> DatasetSplits``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .._protocols import Batch, DatasetSplits
from ._support import assert_registers

__all__ = ["DatasetConformance"]


class DatasetConformance:
    """Subclass in a ``Test*`` class and implement :meth:`make_provider`.

    Checks: the provider accepts ``root`` and returns
    :class:`~ssl_core.DatasetSplits` with non-empty train and test splits, a
    modality and a sensible ``num_classes``; ``collate`` turns a few train samples
    into a batch with ``"x"`` and a few test samples into one with ``"x"`` and
    ``"y"`` (labels within ``num_classes``); the provider passes core's
    registration check.

    Example:
        >>> class TestMyDataset(DatasetConformance):  # doctest: +SKIP
        ...     root = "tests/data/tiny"
        ...     def make_provider(self):
        ...         return my_dataset
        ...     def provider_options(self):
        ...         return {"max_items": 32}
    """

    root: str | None = None
    """Passed as ``root=``; point it at a tiny local copy for offline tests."""
    collate_samples: int = 4
    """How many samples each collate check takes."""

    def make_provider(self) -> Callable[..., DatasetSplits]:
        """The dataset provider function (or class) under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_provider()")

    def provider_options(self) -> dict[str, Any]:
        """Keyword options for the provider (keep the data small); default none."""
        return {}

    def _splits(self) -> DatasetSplits:
        splits = self.make_provider()(root=self.root, **self.provider_options())
        assert isinstance(splits, DatasetSplits), f"the provider must return DatasetSplits, got {type(splits).__name__}"
        return splits

    def _collate(self, splits: DatasetSplits, which: str) -> Batch:
        dataset = getattr(splits, which)
        count = min(self.collate_samples, len(dataset))
        batch = splits.collate([dataset[i] for i in range(count)])
        assert isinstance(batch, Mapping), f"collate must return a dict batch, got {type(batch).__name__}"
        assert "x" in batch, f"collated {which} batch has no 'x' key (keys: {sorted(batch)})"
        return dict(batch)

    def test_returns_non_empty_splits(self) -> None:
        splits = self._splits()
        assert len(splits.train) > 0, "the train split is empty"  # type: ignore[arg-type]
        assert len(splits.test) > 0, "the test split is empty"  # type: ignore[arg-type]

    def test_declares_modality_and_classes(self) -> None:
        splits = self._splits()
        assert isinstance(splits.modality, str) and splits.modality, "modality must be a non-empty str"
        assert splits.num_classes is None or (isinstance(splits.num_classes, int) and splits.num_classes > 0), (
            f"num_classes must be None or a positive int, got {splits.num_classes!r}"
        )
        assert isinstance(splits.info, dict), "info must be a dict"

    def test_collate_builds_train_batch(self) -> None:
        self._collate(self._splits(), "train")

    def test_collate_builds_labelled_test_batch(self) -> None:
        splits = self._splits()
        batch = self._collate(splits, "test")
        assert "y" in batch, f"collated test batch has no 'y' labels (keys: {sorted(batch)}); evaluators need them"
        labels = batch["y"]
        if isinstance(labels, Tensor) and splits.num_classes is not None and not labels.is_floating_point():
            assert int(labels.min()) >= 0 and int(labels.max()) < splits.num_classes, (
                f"labels must lie in [0, {splits.num_classes}), got {labels.tolist()}"
            )

    def test_registers_as_dataset(self) -> None:
        assert_registers("dataset", self.make_provider())
