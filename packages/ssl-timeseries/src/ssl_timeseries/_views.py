"""View generators for time series: TS2Vec crops, timestamp masks, subsequence (MVP) masks.

All randomness comes from the ``generator`` argument, and every draw is made for the
whole batch at once (no Python loop over samples).

Example:
    >>> import torch
    >>> views = CropViews()({"x": torch.randn(4, 20, 1)}, torch.Generator().manual_seed(0))
    >>> len(views), views.extras["overlap"] <= views.batches[0]["x"].shape[1]
    (2, True)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ssl_core import ViewGeneratorBase, Views

from .functional import binomial_mask, continuous_mask, geometric_mask, take_per_row, ts2vec_crops

__all__ = ["CropViews", "SubsequenceMaskViews", "TimestampMaskViews"]

MaskMode = Literal["binomial", "continuous", "none"]


def _series(batch: dict[str, Any], who: str) -> tuple[Tensor, Tensor]:
    x = batch.get("x")
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who} expects batch['x'] as [B, T, C], got {shape}")
    padding = torch.isnan(x).any(dim=-1)
    given = batch.get("padding_mask")
    if isinstance(given, Tensor) and given.shape == padding.shape:
        padding = padding | given.to(torch.bool)
    return x, padding


def _sample_names(batch: dict[str, Any], rows: Tensor) -> str:
    index = batch.get("index")
    ids = index[rows].tolist() if isinstance(index, Tensor) else rows.tolist()
    return ", ".join(str(i) for i in ids[:10]) + (" ..." if len(ids) > 10 else "")


def _time_mask(
    mode: MaskMode, shape: tuple[int, int], ratio: float, generator: torch.Generator, device: torch.device
) -> Tensor | None:
    if mode == "none":
        return None
    if mode == "binomial":
        return binomial_mask(shape, ratio, generator).to(device)
    if mode == "continuous":
        return continuous_mask(shape[0], shape[1], generator).to(device)
    raise ValueError(f"mask must be 'binomial', 'continuous' or 'none', got {mode!r}")


class CropViews(ViewGeneratorBase):
    """TS2Vec's two overlapping random crops, with a timestamp mask per view.

    View 1 covers ``[a1, b1)`` and view 2 ``[a2, b2)`` with ``a1 <= a2 < b1 <= b2``
    (one length per batch, one offset per sample); ``extras["overlap"]`` is the
    length of the shared segment: the last ``overlap`` steps of view 1 are the first
    ``overlap`` of view 2. Series longer than ``max_length`` are first cut to a
    random window of ``max_length`` steps (TS2Vec's ``max_train_length``).

    Args:
        min_crop: shortest overlap (TS2Vec: ``2 ** (temporal_unit + 1)`` = 2).
        max_length: window cut from longer series (3000).
        mask: timestamp mask per view, ``"binomial"`` (TS2Vec's default), ``"continuous"`` or ``"none"``.
        mask_ratio: masking probability of the binomial mask (0.5).

    Raises:
        ValueError: a sample has fewer observed (non-NaN) steps than ``min_crop``; the message names it.

    Example:
        >>> import torch
        >>> v = CropViews(mask="none")({"x": torch.randn(2, 12, 3)}, torch.Generator().manual_seed(1))
        >>> v.masks is None
        True
    """

    modality: ClassVar[str] = "timeseries"
    num_views: ClassVar[int] = 2

    def __init__(
        self, min_crop: int = 2, max_length: int = 3000, mask: MaskMode = "binomial", mask_ratio: float = 0.5
    ) -> None:
        if min_crop < 1:
            raise ValueError(f"min_crop must be at least 1, got {min_crop}")
        if max_length < min_crop:
            raise ValueError(f"max_length ({max_length}) must be at least min_crop ({min_crop})")
        if mask not in ("binomial", "continuous", "none"):
            raise ValueError(f"mask must be 'binomial', 'continuous' or 'none', got {mask!r}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        self.min_crop, self.max_length, self.mask, self.mask_ratio = min_crop, max_length, mask, mask_ratio

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x, padding = _series(batch, type(self).__name__)
        observed = (~padding).sum(dim=1)
        short = torch.nonzero(observed < self.min_crop).flatten()
        if short.numel():
            raise ValueError(
                f"sample(s) {_sample_names(batch, short)} have {observed[short].tolist()[:10]} observed steps, "
                f"fewer than the minimum crop of {self.min_crop}; drop them or lower [views] min_crop"
            )
        b, length = x.shape[:2]
        if length > self.max_length:
            cut = int(
                torch.randint(0, length - self.max_length + 1, (1,), generator=generator, device=generator.device)
            )
            x, padding = x[:, cut : cut + self.max_length], padding[:, cut : cut + self.max_length]
            length = self.max_length
        start1, start2, len1, len2, overlap = ts2vec_crops(length, b, generator, self.min_crop, device=x.device)
        crops = []
        for start, size in ((start1, len1), (start2, len2)):
            crops.append(
                {**batch, "x": take_per_row(x, start, size), "padding_mask": take_per_row(padding, start, size)}
            )
        masks: list[Tensor | None] | None = None
        if self.mask != "none":
            masks = [_time_mask(self.mask, (b, size), self.mask_ratio, generator, x.device) for size in (len1, len2)]
        return Views(batches=crops, masks=masks, extras={"overlap": overlap, "starts": (start1, start2)})


class TimestampMaskViews(ViewGeneratorBase):
    """Copies of the batch with a random timestamp mask each (``True`` = masked), for token-mask encoders.

    Args:
        num_views: copies of the batch.
        mask: ``"binomial"`` (each step with probability ``mask_ratio``) or ``"continuous"`` (spans).
        mask_ratio: masking probability of the binomial mask.

    Example:
        >>> import torch
        >>> v = TimestampMaskViews(num_views=1)({"x": torch.randn(2, 8, 1)}, torch.Generator().manual_seed(0))
        >>> v.masks[0].shape
        torch.Size([2, 8])
    """

    modality: ClassVar[str] = "timeseries"

    def __init__(self, num_views: int = 2, mask: MaskMode = "binomial", mask_ratio: float = 0.5) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {num_views}")
        if mask not in ("binomial", "continuous"):
            raise ValueError(f"mask must be 'binomial' or 'continuous', got {mask!r}")
        self.num_views, self.mask, self.mask_ratio = num_views, mask, mask_ratio

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x, _ = _series(batch, type(self).__name__)
        shape = (x.shape[0], x.shape[1])
        masks: list[Tensor | None] = [
            _time_mask(self.mask, shape, self.mask_ratio, generator, x.device) for _ in range(self.num_views)
        ]
        return Views(batches=[dict(batch) for _ in range(self.num_views)], masks=masks)


class SubsequenceMaskViews(ViewGeneratorBase):
    """tsai MVP's geometric subsequence masks: masked values are set to 0 in the view's input.

    Returns one view: ``batches[0]["x"]`` has masked values zeroed, ``masks[0]`` is
    the ``[B, T]`` timestamp mask (steps with any channel masked), and
    ``extras["value_mask"]`` (``[B, T, C]``) and ``extras["target"]`` (the original
    ``x``) feed the masked-value loss.

    Args:
        mask_ratio: fraction of values masked (tsai: 0.15).
        mean_length: mean length of a masked run (tsai: 3).
        sync: mask all channels at the same steps (needed to use the mask as a token mask).

    Example:
        >>> import torch
        >>> v = SubsequenceMaskViews()({"x": torch.randn(2, 50, 3)}, torch.Generator().manual_seed(0))
        >>> v.extras["value_mask"].shape
        torch.Size([2, 50, 3])
    """

    modality: ClassVar[str] = "timeseries"
    num_views: ClassVar[int] = 1

    def __init__(self, mask_ratio: float = 0.15, mean_length: float = 3.0, sync: bool = False) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if mean_length <= 0:
            raise ValueError(f"mean_length must be positive, got {mean_length}")
        self.mask_ratio, self.mean_length, self.sync = mask_ratio, mean_length, sync

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x, padding = _series(batch, type(self).__name__)
        b, length, channels = x.shape
        if self.sync:
            steps = geometric_mask((b, length), generator, self.mask_ratio, self.mean_length).to(x.device)
            value_mask = steps.unsqueeze(-1).expand(b, length, channels)
        else:
            per_channel = geometric_mask((b, channels, length), generator, self.mask_ratio, self.mean_length)
            value_mask = per_channel.to(x.device).transpose(1, 2)
        value_mask = value_mask & ~padding.unsqueeze(-1)
        masked = x.masked_fill(value_mask, 0.0)
        view = {**batch, "x": masked}
        return Views(batches=[view], masks=[value_mask.any(dim=-1)], extras={"value_mask": value_mask, "target": x})
