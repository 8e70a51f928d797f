"""Conformance tests for view generators: ``views(batch, generator) -> Views``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

from .._protocols import Batch, Views
from ._support import assert_declares_flags, assert_registers, clone_batch, first_difference

__all__ = ["ViewGeneratorConformance"]


class ViewGeneratorConformance:
    """Subclass in a ``Test*`` class and implement :meth:`make_views` and :meth:`make_batch`.

    Checks: ``modality`` is declared; the result is :class:`~ssl_core.Views` with at
    least one batch, each keeping the raw batch's keys; ``masks`` (if any) align with
    the batches and are bool; the same seed gives the same views and a different seed
    different ones (set ``random_views = False`` for a deterministic generator); the
    input batch is left untouched; the class passes core's registration check.

    Example:
        >>> class TestMyViews(ViewGeneratorConformance):  # doctest: +SKIP
        ...     def make_views(self):
        ...         return MyViews(num_views=2)
        ...     def make_batch(self):
        ...         return {"x": torch.randn(8, 64), "y": torch.zeros(8, dtype=torch.long)}
    """

    random_views: bool = True
    """``False`` for generators that ignore randomness (then seeds may give equal views)."""

    def make_views(self) -> Any:
        """A small instance of the view generator under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_views()")

    def make_batch(self) -> Batch:
        """A raw collated batch, as the dataset's collate function produces it."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_batch()")

    @staticmethod
    def _generate(views: Any, batch: Batch, seed: int) -> Views:
        generator = torch.Generator().manual_seed(seed)
        out = views(batch, generator)
        assert isinstance(out, Views), f"{type(views).__name__} must return ssl_core.Views, got {type(out).__name__}"
        return out

    @staticmethod
    def _first_view_difference(a: Views, b: Views) -> str | None:
        if len(a) != len(b):
            return "number of views"
        for index, (left, right) in enumerate(zip(a.batches, b.batches, strict=True)):
            key = first_difference(left, right)
            if key is not None:
                return f"view {index} key {key!r}"
        for index, (left_mask, right_mask) in enumerate(zip(a.masks or [], b.masks or [], strict=False)):
            if (
                isinstance(left_mask, Tensor)
                and isinstance(right_mask, Tensor)
                and not torch.equal(left_mask, right_mask)
            ):
                return f"mask {index}"
        return None

    def test_declares_modality(self) -> None:
        assert_declares_flags(self.make_views(), "views")

    def test_returns_views_keeping_batch_keys(self) -> None:
        batch = self.make_batch()
        out = self._generate(self.make_views(), batch, seed=0)
        assert len(out.batches) >= 1, "Views must hold at least one batch"
        for index, view in enumerate(out.batches):
            assert isinstance(view, Mapping), f"view {index} must be a dict batch, got {type(view).__name__}"
            missing = sorted(set(batch) - set(view))
            assert not missing, f"view {index} dropped keys {missing} of the raw batch"

    def test_masks_align_with_batches(self) -> None:
        out = self._generate(self.make_views(), self.make_batch(), seed=0)
        if out.masks is None:
            pytest.skip("the generator returns no masks")
        assert len(out.masks) == len(out.batches), f"{len(out.masks)} masks for {len(out.batches)} views"
        for index, mask in enumerate(out.masks):
            assert mask is None or (isinstance(mask, Tensor) and mask.dtype == torch.bool), (
                f"mask {index} must be None or a bool tensor (True = masked)"
            )

    def test_same_seed_gives_same_views(self) -> None:
        views, batch = self.make_views(), self.make_batch()
        difference = self._first_view_difference(self._generate(views, batch, 0), self._generate(views, batch, 0))
        assert difference is None, (
            f"two runs with the same seeded generator differ at {difference}; draw every "
            "random number from the `generator` argument"
        )

    def test_different_seeds_give_different_views(self) -> None:
        if not self.random_views:
            pytest.skip("random_views is False")
        views, batch = self.make_views(), self.make_batch()
        difference = self._first_view_difference(self._generate(views, batch, 0), self._generate(views, batch, 1))
        assert difference is not None, "seeds 0 and 1 gave identical views; is the generator argument ignored?"

    def test_leaves_input_batch_untouched(self) -> None:
        batch = self.make_batch()
        before = clone_batch(batch)
        self._generate(self.make_views(), batch, seed=0)
        changed = first_difference(before, batch)
        assert changed is None, f"the view generator modified the input batch in place (key {changed!r})"

    def test_registers_as_views(self) -> None:
        assert_registers("views", type(self.make_views()))
