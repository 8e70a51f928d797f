"""Objectives: TS2Vec's hierarchical contrastive loss and MVP masked value prediction.

Example:
    >>> import torch
    >>> from ssl_timeseries import CropViews, TS2VecEncoder
    >>> enc = TS2VecEncoder(in_channels=1, embed_dim=8, hidden_dim=8, depth=1)
    >>> views = CropViews()({"x": torch.randn(4, 16, 1)}, torch.Generator().manual_seed(0))
    >>> TS2VecObjective()(enc, views)["loss"].dim()
    0
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import ObjectiveBase, Views

from .functional import hierarchical_contrastive_loss, masked_mse

__all__ = ["MVPObjective", "TS2VecObjective"]


def _tokens(encoder: nn.Module, batch: dict[str, Any], mask: Tensor | None, who: str) -> Tensor:
    out = encoder(batch, token_mask=mask) if mask is not None else encoder(batch)
    if out.tokens is None:
        raise ValueError(f"{who} needs per-timestamp tokens but {type(encoder).__name__} returned Features.tokens=None")
    return out.tokens  # type: ignore[no-any-return]


class TS2VecObjective(ObjectiveBase):
    """TS2Vec: hierarchical (instance + temporal) contrast between the overlap of two crops.

    Expects :class:`~ssl_timeseries.CropViews` (two batches and ``extras["overlap"]``);
    each view's timestamp mask is passed to the encoder as ``token_mask``. Views
    without ``overlap`` are treated as fully aligned. The objective has no parameters
    of its own.

    Args:
        alpha: weight of the instance-wise term (0.5).
        temporal_unit: hierarchy level from which the temporal term is used (0).

    Example:
        >>> TS2VecObjective(alpha=0.5).requires_tokens
        True
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = False
    requires_layers: ClassVar[bool] = False

    min_views: ClassVar[int] = 2

    def __init__(self, alpha: float = 0.5, temporal_unit: int = 0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temporal_unit < 0:
            raise ValueError(f"temporal_unit must be non-negative, got {temporal_unit}")
        self.alpha, self.temporal_unit = alpha, temporal_unit

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        if len(views) != 2:
            raise ValueError(f"TS2Vec needs exactly 2 views (timeseries.crops), got {len(views)}")
        masks = views.masks or [None, None]
        use_masks = getattr(encoder, "supports_token_mask", False)
        many = getattr(encoder, "forward_many", None)
        if callable(many) and use_masks:  # both crops in one pass (TS2VecEncoder)
            outs = many(list(views.batches), list(masks))
            if any(out.tokens is None for out in outs):
                raise ValueError(f"TS2Vec needs per-timestamp tokens but {type(encoder).__name__} returned none")
            z1, z2 = outs[0].tokens, outs[1].tokens
        else:
            z1 = _tokens(encoder, views.batches[0], masks[0] if use_masks else None, "TS2Vec")
            z2 = _tokens(encoder, views.batches[1], masks[1] if use_masks else None, "TS2Vec")
        overlap = int(views.extras.get("overlap", min(z1.shape[1], z2.shape[1])))
        if z1.shape[1] < overlap or z2.shape[1] < overlap:
            raise ValueError(
                f"the encoder returned {z1.shape[1]} and {z2.shape[1]} tokens for crops overlapping by "
                f"{overlap} steps; "
                "TS2Vec needs one token per timestamp"
            )
        z1, z2 = z1[:, z1.shape[1] - overlap :], z2[:, :overlap]
        parts: dict[str, Tensor] = {}
        loss = hierarchical_contrastive_loss(z1, z2, alpha=self.alpha, temporal_unit=self.temporal_unit, parts=parts)
        self.__dict__["_parts"] = parts
        with torch.no_grad():
            std = F.normalize(z1.amax(dim=1).float(), dim=-1).std(dim=0).mean()
        return {"loss": loss, "overlap": torch.tensor(float(overlap)), "embedding_std": std}

    def health(self) -> dict[str, float]:
        """The instance-wise and temporal terms of the last step's loss (they sum to it)."""
        parts = self.__dict__.get("_parts") or {}
        return {f"{name}_loss": float(value) for name, value in parts.items()}


class MVPObjective(ObjectiveBase):
    """Masked value prediction (tsai MVP / Zerveas et al.): reconstruct masked values, MSE on them.

    Expects :class:`~ssl_timeseries.SubsequenceMaskViews`: the encoder sees the input
    with masked values zeroed, a linear head maps each token back to ``in_channels``
    values. Tokens on a coarser grid than the input (patch encoders) are linearly
    interpolated to the input length first, so any encoder with tokens works. With
    ``token_mask=True`` the view's timestamp mask is also passed to the encoder
    (needs ``supports_token_mask``; use ``sync = true`` views so whole steps are masked).

    Args:
        embed_dim: the encoder's width (filled from the encoder).
        in_channels: channels to reconstruct (filled from the dataset).
        token_mask: also hide masked steps through the encoder's ``token_mask``.

    Example:
        >>> MVPObjective(embed_dim=8, in_channels=1).head
        Linear(in_features=8, out_features=1, bias=True)
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = False
    requires_layers: ClassVar[bool] = False

    def __init__(self, embed_dim: int, in_channels: int, token_mask: bool = False) -> None:
        super().__init__()
        self.embed_dim, self.in_channels, self.token_mask = embed_dim, in_channels, token_mask
        self.head = nn.Linear(embed_dim, in_channels)

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        if "value_mask" not in views.extras or "target" not in views.extras:
            raise ValueError(
                "MVP needs views with extras 'value_mask' and 'target' (use views 'timeseries.subsequence_mask')"
            )
        value_mask: Tensor = views.extras["value_mask"]
        target: Tensor = views.extras["target"]
        mask = views.masks[0] if (self.token_mask and views.masks) else None
        if mask is not None and not getattr(encoder, "supports_token_mask", False):
            raise ValueError(
                f"MVP token_mask=true needs an encoder with supports_token_mask; {type(encoder).__name__} has none"
            )
        tokens = _tokens(encoder, views.batches[0], mask, "MVP")  # [B, T', D]
        length = target.shape[1]
        if tokens.shape[1] != length:
            tokens = F.interpolate(tokens.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(
                1, 2
            )
        prediction = self.head(tokens)  # [B, T, C]
        if prediction.shape != target.shape:
            raise ValueError(f"MVP head predicts {tuple(prediction.shape)} but the target is {tuple(target.shape)}")
        loss = masked_mse(prediction, target, value_mask)
        with torch.no_grad():
            ratio = value_mask.float().mean()
        return {"loss": loss, "masked_ratio": ratio}
