"""Conformance tests for encoders: what every ``Encoder`` must do, checked by behaviour."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from .._protocols import Batch, Features
from ._support import assert_declares_flags, assert_registers, embed_dim_of

__all__ = ["EncoderConformance"]


class EncoderConformance:
    """Subclass in a ``Test*`` class and implement :meth:`make_encoder` and :meth:`make_batch`.

    Checks: ``embed_dim`` and capability flags are declared; ``Features.pooled`` is
    a finite float ``[B, embed_dim]``; ``tokens``/``padding_mask`` have matching
    shapes when ``returns_tokens``; ``layers`` are ``[B, T, D]`` or ``[B, D]`` and
    share one width when ``returns_layers``; a token mask is accepted and changes
    the output when ``supports_token_mask``; gradients reach the parameters; eval
    mode is deterministic; the class passes core's registration check.

    Example:
        >>> class TestMyEncoder(EncoderConformance):  # doctest: +SKIP
        ...     def make_encoder(self):
        ...         return MyEncoder(in_dim=64, embed_dim=32)
        ...     def make_batch(self):
        ...         return {"x": torch.randn(8, 64)}
    """

    seed: int = 0
    """Seeds ``torch`` before :meth:`make_encoder`, so parameters are reproducible."""

    def make_encoder(self) -> nn.Module:
        """A small instance of the encoder under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_encoder()")

    def make_batch(self) -> Batch:
        """A collated batch the encoder accepts (``{"x": ..., ...}``), at least 2 samples."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_batch()")

    def batch_size(self, batch: Batch) -> int:
        """Samples in ``batch``; override where ``x`` is not sample-major (graphs: count graphs)."""
        return int(batch["x"].shape[0])

    def make_token_mask(self, encoder: nn.Module, batch: Batch) -> Tensor:
        """A ``[B, T]`` token mask (``True`` = masked); default: every other token of the tokens grid."""
        with torch.no_grad():
            tokens = encoder(batch).tokens
        assert tokens is not None, "override make_token_mask(): the encoder returned no tokens to size a mask from"
        mask = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        mask[:, ::2] = True
        return mask

    # ------------------------------------------------------------------ helpers

    def _build(self) -> tuple[nn.Module, Batch]:
        torch.manual_seed(self.seed)
        return self.make_encoder(), self.make_batch()

    @staticmethod
    def _features(encoder: nn.Module, batch: Batch, **kwargs: Any) -> Features:
        out = encoder(batch, **kwargs)
        assert isinstance(out, Features), f"{type(encoder).__name__} must return ssl_core.Features, got {type(out)}"
        return out

    # ------------------------------------------------------------------ tests

    def test_declares_embed_dim_and_flags(self) -> None:
        encoder, _ = self._build()
        embed_dim_of(encoder)
        assert_declares_flags(encoder, "encoder")

    def test_pooled_shape_and_dtype(self) -> None:
        encoder, batch = self._build()
        features = self._features(encoder, batch)
        expected = (self.batch_size(batch), embed_dim_of(encoder))
        assert tuple(features.pooled.shape) == expected, (
            f"pooled must be [B, embed_dim] = {expected}, got {tuple(features.pooled.shape)}"
        )
        assert features.pooled.is_floating_point(), f"pooled must be floating point, got {features.pooled.dtype}"
        assert torch.isfinite(features.pooled).all(), "pooled contains NaN or inf"

    def test_tokens_when_declared(self) -> None:
        encoder, batch = self._build()
        features = self._features(encoder, batch)
        if not encoder.returns_tokens:
            pytest.skip("returns_tokens is False")
        tokens = features.tokens
        assert tokens is not None, "returns_tokens is True but Features.tokens is None"
        size, dim = self.batch_size(batch), embed_dim_of(encoder)
        assert tokens.dim() == 3 and tokens.shape[0] == size and tokens.shape[2] == dim, (
            f"tokens must be [B, T, embed_dim] with B={size}, D={dim}, got {tuple(tokens.shape)}"
        )
        assert tokens.is_floating_point() and torch.isfinite(tokens).all(), "tokens must be finite floats"
        if features.padding_mask is not None:
            assert features.padding_mask.dtype == torch.bool, "padding_mask must be a bool tensor"
            assert features.padding_mask.shape == tokens.shape[:2], (
                f"padding_mask must be [B, T] = {tuple(tokens.shape[:2])}, got {tuple(features.padding_mask.shape)}"
            )

    def test_layers_when_declared(self) -> None:
        encoder, batch = self._build()
        features = self._features(encoder, batch)
        if not encoder.returns_layers:
            pytest.skip("returns_layers is False")
        layers = features.layers
        assert layers, "returns_layers is True but Features.layers is empty or None"
        size = self.batch_size(batch)
        for index, layer in enumerate(layers):
            assert layer.dim() in (2, 3) and layer.shape[0] == size, (
                f"layer {index} must be [B, T, D] or [B, D] with B={size}, got {tuple(layer.shape)}"
            )
            assert layer.is_floating_point() and torch.isfinite(layer).all(), f"layer {index} must be finite floats"

    def test_accepts_token_mask_when_declared(self) -> None:
        encoder, batch = self._build()
        if not encoder.supports_token_mask:
            pytest.skip("supports_token_mask is False")
        encoder.eval()
        mask = self.make_token_mask(encoder, batch)
        with torch.no_grad():
            plain = self._features(encoder, batch)
            masked = self._features(encoder, batch, token_mask=mask)
        assert masked.pooled.shape == plain.pooled.shape, "a token mask must not change the pooled shape"
        changed = not torch.allclose(masked.pooled, plain.pooled)
        if plain.tokens is not None and masked.tokens is not None and masked.tokens.shape == plain.tokens.shape:
            changed = changed or not torch.allclose(masked.tokens, plain.tokens)
        assert changed, "the token mask was accepted but changed nothing; masked tokens must be hidden from the encoder"

    def test_gradients_reach_parameters(self) -> None:
        encoder, batch = self._build()
        encoder.train()
        trainable = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
        assert trainable, f"{type(encoder).__name__} has no trainable parameters"
        self._features(encoder, batch).pooled.square().mean().backward()
        reached = [n for n, p in trainable if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        assert reached, "no gradient reached any parameter from Features.pooled"
        for name, param in trainable:
            if param.grad is not None:
                assert torch.isfinite(param.grad).all(), f"gradient of {name} is not finite"

    def test_eval_mode_is_deterministic(self) -> None:
        encoder, batch = self._build()
        encoder.eval()
        with torch.no_grad():
            first = self._features(encoder, batch).pooled
            second = self._features(encoder, batch).pooled
        assert torch.allclose(first, second), "two eval-mode forwards of one batch differ (evaluators need stability)"

    def test_registers_as_encoder(self) -> None:
        encoder, _ = self._build()
        assert_registers("encoder", type(encoder))
