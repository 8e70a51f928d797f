"""Small, fast stand-ins for real components, so one box can be tested without the others.

:class:`ToyEncoder` declares every capability (tokens, token masks, layers), so it
fits any objective; :func:`toy_batch` makes a labelled sequence batch whose labels
are learnable; :func:`toy_views` turns a batch into noisy views (with token masks
when asked).

Example:
    >>> import torch
    >>> encoder = ToyEncoder(in_dim=12, embed_dim=16)
    >>> batch = toy_batch(batch_size=4, num_tokens=5, in_dim=12)
    >>> encoder(batch).tokens.shape
    torch.Size([4, 5, 16])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .._bases import EncoderBase
from .._evaluation_functional import masked_mean
from .._protocols import Batch, Features, Views

__all__ = ["ToyEncoder", "toy_batch", "toy_labelled_batches", "toy_views"]


class ToyEncoder(EncoderBase):
    """A two-layer token encoder that declares every capability flag.

    Takes ``x`` as ``[B, T, in_dim]`` (or ``[B, in_dim]``, read as one token) and an
    optional ``padding_mask`` ``[B, T]`` in the batch. Masked tokens (``token_mask``
    ``True``) are replaced by a learned mask token before the first layer. Returns
    tokens, both hidden layers (same width) and the mean over non-padded tokens.

    Example:
        >>> import torch
        >>> out = ToyEncoder(in_dim=3, embed_dim=4)({"x": torch.zeros(2, 3)})
        >>> out.pooled.shape, len(out.layers)
        (torch.Size([2, 4]), 2)
    """

    modality: ClassVar[str] = "any"
    supports_token_mask: ClassVar[bool] = True
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = True

    def __init__(self, in_dim: int = 12, embed_dim: int = 16) -> None:
        super().__init__()
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.mask_token = nn.Parameter(torch.zeros(in_dim))
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.GELU())
        self.mix = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, embed_dim), nn.GELU())

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        x = batch["x"]
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"ToyEncoder expects x of shape [B, T, {self.in_dim}] or [B, {self.in_dim}], "
                f"got {tuple(batch['x'].shape)}"
            )
        if token_mask is not None:
            x = torch.where(token_mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        padding_mask = batch.get("padding_mask")
        if padding_mask is not None and padding_mask.shape != x.shape[:2]:
            padding_mask = None  # a [B, in_dim] batch read as one token has no per-token padding
        first = self.embed(x)
        second = first + self.mix(first)
        return Features(
            pooled=masked_mean(second, padding_mask), tokens=second, padding_mask=padding_mask, layers=(first, second)
        )


def toy_batch(
    batch_size: int = 16, num_tokens: int = 6, in_dim: int = 12, num_classes: int = 3, *, seed: int = 0
) -> Batch:
    """A labelled batch ``{"x": [B, T, in_dim], "y": [B], "padding_mask": [B, T]}``.

    Each sample is its class prototype plus noise, so labels can be learned; the last
    token of every other sample is padding.

    Example:
        >>> batch = toy_batch(batch_size=4, num_tokens=3, in_dim=2)
        >>> sorted(batch), tuple(batch["x"].shape)
        (['padding_mask', 'x', 'y'], (4, 3, 2))
    """
    rng = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, 1, in_dim, generator=torch.Generator().manual_seed(12345))
    y = torch.arange(batch_size) % num_classes
    x = prototypes[y] + 0.5 * torch.randn(batch_size, num_tokens, in_dim, generator=rng)
    padding_mask = torch.zeros(batch_size, num_tokens, dtype=torch.bool)
    if num_tokens > 1:
        padding_mask[1::2, -1] = True
    return {"x": x, "y": y, "padding_mask": padding_mask}


def toy_labelled_batches(
    num_batches: int = 4,
    batch_size: int = 16,
    *,
    num_tokens: int = 6,
    in_dim: int = 12,
    num_classes: int = 3,
    seed: int = 0,
) -> list[Batch]:
    """Several :func:`toy_batch` batches with different noise, e.g. a split for an evaluator.

    Example:
        >>> len(toy_labelled_batches(num_batches=3))
        3
    """
    return [toy_batch(batch_size, num_tokens, in_dim, num_classes, seed=seed + i) for i in range(num_batches)]


def toy_views(
    batch: Batch, num_views: int = 2, *, noise_std: float = 0.1, mask_ratio: float = 0.0, seed: int = 0
) -> Views:
    """Noisy copies of ``batch["x"]``; with ``mask_ratio > 0`` also a random token mask per view.

    Example:
        >>> views = toy_views(toy_batch(batch_size=4), num_views=2, mask_ratio=0.5)
        >>> len(views), views.masks[0].dtype
        (2, torch.bool)
    """
    rng = torch.Generator().manual_seed(seed)
    x = batch["x"]
    batches = [{**batch, "x": x + noise_std * torch.randn(x.shape, generator=rng)} for _ in range(num_views)]
    if mask_ratio <= 0:
        return Views(batches=batches)
    tokens = x.shape[:2] if x.dim() == 3 else (x.shape[0], 1)
    masks: list[Tensor | None] = [torch.rand(tokens, generator=rng) < mask_ratio for _ in range(num_views)]
    return Views(batches=batches, masks=masks)
