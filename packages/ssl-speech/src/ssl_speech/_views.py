"""View generator for masked speech models: span-mask settings and a seed drawn for this batch.

The mask is over encoder frames, whose number depends on the encoder's front-end, so the
objective draws it (with :func:`ssl_speech.functional.span_mask`), and its negatives and
Gumbel noise, from a generator seeded with the ``span_seed`` this view draws from the
pipeline's generator: runs are reproducible and resume exactly.

Example:
    >>> import torch
    >>> v = SpanMaskViews()({"x": torch.zeros(2, 16000)}, torch.Generator())
    >>> v.extras["mask_prob"], v.extras["mask_length"], v.batches[0]["span_seed"].dtype
    (0.65, 10, torch.int64)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ssl_core import Views

__all__ = ["SpanMaskViews"]


class SpanMaskViews:
    """wav2vec 2.0 / HuBERT masking settings (``mask_prob`` of frames as span starts, ``mask_length`` frames each).

    Defaults are wav2vec 2.0's (0.65, 10); HuBERT uses ``mask_prob = 0.8``.

    Example:
        >>> SpanMaskViews(mask_prob=0.0)
        Traceback (most recent call last):
        ...
        ValueError: mask_prob must be in (0, 1], got 0.0
    """

    modality: ClassVar[str] = "audio"

    def __init__(self, mask_prob: float = 0.65, mask_length: int = 10, min_masks: int = 2) -> None:
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if mask_length < 1:
            raise ValueError(f"mask_length must be at least 1, got {mask_length}")
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        if not isinstance(batch.get("x"), torch.Tensor):
            raise ValueError("SpanMaskViews needs an audio batch with waveforms under 'x'")
        seed = torch.randint(0, 2**62, (), generator=generator, device=generator.device)
        return Views(
            batches=[{**batch, "span_seed": seed}],
            extras={
                "mask_prob": self.mask_prob,
                "mask_length": self.mask_length,
                "min_masks": self.min_masks,
            },
        )
