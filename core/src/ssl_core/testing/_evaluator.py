"""Conformance tests for evaluators: ``evaluator(encoder, train, test) -> dict[str, float]``."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from .._protocols import Batch
from ._doubles import ToyEncoder, toy_labelled_batches
from ._support import assert_declares_flags, assert_registers

__all__ = ["EvaluatorConformance"]


class EvaluatorConformance:
    """Subclass in a ``Test*`` class and implement :meth:`make_evaluator`.

    By default the evaluator scores a :class:`~ssl_core.testing.ToyEncoder` on
    labelled :func:`~ssl_core.testing.toy_labelled_batches`; override
    :meth:`make_encoder` and :meth:`make_splits` for modality-specific batches.

    Checks: ``higher_is_better`` is declared; the result is a non-empty
    ``dict[str, float]`` of finite values; the encoder's weights and train/eval
    mode are left as they were; two calls agree (set ``deterministic = False`` to
    skip); the class passes core's registration check.

    Example:
        >>> class TestMyEvaluator(EvaluatorConformance):  # doctest: +SKIP
        ...     def make_evaluator(self):
        ...         return MyEvaluator(seeds=2)
    """

    seed: int = 0
    """Seeds ``torch`` before the encoder is built."""
    deterministic: bool = True
    """``False`` for evaluators whose metrics may differ between two identical calls."""

    def make_evaluator(self) -> Any:
        """A small, fast instance of the evaluator under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_evaluator()")

    def make_encoder(self) -> nn.Module:
        """The frozen encoder to score; default: a :class:`ToyEncoder` (12 features in, 16 out)."""
        return ToyEncoder(in_dim=12, embed_dim=16)

    def make_splits(self) -> tuple[list[Batch], list[Batch]]:
        """Labelled ``(train, test)`` batches (each with ``"y"``); default: toy batches of 3 classes."""
        return toy_labelled_batches(num_batches=4, seed=0), toy_labelled_batches(num_batches=2, seed=100)

    def _score(self) -> tuple[dict[str, float], nn.Module]:
        torch.manual_seed(self.seed)
        encoder = self.make_encoder()
        train, test = self.make_splits()
        metrics = self.make_evaluator()(encoder, train, test)
        assert isinstance(metrics, dict), f"an evaluator must return a dict, got {type(metrics).__name__}"
        return metrics, encoder

    def test_declares_higher_is_better(self) -> None:
        assert_declares_flags(self.make_evaluator(), "evaluator")

    def test_returns_finite_float_metrics(self) -> None:
        metrics, _ = self._score()
        assert metrics, "the evaluator returned no metrics"
        for key, value in metrics.items():
            assert isinstance(key, str), f"metric names must be str, got {key!r}"
            assert isinstance(value, (float, int)) and not isinstance(value, bool), (
                f"metric {key!r} must be a Python float, got {type(value).__name__} (call float() or .item())"
            )
            assert math.isfinite(value), f"metric {key!r} is not finite: {value}"

    def test_leaves_encoder_unchanged(self) -> None:
        torch.manual_seed(self.seed)
        encoder = self.make_encoder()
        encoder.train()
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        train, test = self.make_splits()
        self.make_evaluator()(encoder, train, test)
        assert encoder.training, "the evaluator left the encoder in eval mode; restore the caller's mode"
        for key, value in encoder.state_dict().items():
            assert torch.equal(value, before[key]), f"the evaluator changed the encoder's {key!r}; it must stay frozen"

    def test_two_calls_agree(self) -> None:
        if not self.deterministic:
            pytest.skip("deterministic is False")
        first, _ = self._score()
        second, _ = self._score()
        ignored = {"seconds"}
        for key in sorted(set(first) - ignored):
            assert math.isclose(first[key], second.get(key, math.nan), rel_tol=1e-5, abs_tol=1e-6), (
                f"metric {key!r} differs between two identical calls: {first[key]} vs {second.get(key)}; seed it"
            )

    def test_registers_as_evaluator(self) -> None:
        assert_registers("evaluator", type(self.make_evaluator()))
