"""tsai's InceptionTimePlus, TSTPlus and PatchTST backbones wrapped as ssl-core encoders.

tsai (and fastai under it) is imported only when one of these encoders is built,
never when this module or the plugin is imported. Each wrapper keeps tsai's
backbone (the model without its classification head), returns its per-step (or
per-patch) outputs as ``Features.tokens`` ``[B, T', D]`` and their max over
time as ``pooled``. NaN steps are zero-filled before the backbone.

Example:
    >>> import torch
    >>> enc = InceptionTimeEncoder(in_channels=2, series_length=32, nf=8)
    >>> enc({"x": torch.randn(3, 32, 2)}).tokens.shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import torch
from torch import Tensor

from ssl_core import EncoderBase, Features

from ._encoders import check_series_batch
from .functional import masked_max_pool

__all__ = ["InceptionTimeEncoder", "PatchTSTEncoder", "TSTEncoder"]


def _tsai_class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(f"tsai.models.{module}"), name)
    except ImportError as exc:  # pragma: no cover - tsai is a declared dependency
        raise ImportError(f"the {name} encoder needs tsai: pip install 'tsai>=1.0' ({exc})") from exc


class _TsaiEncoder(EncoderBase):
    modality: ClassVar[str] = "timeseries"
    supports_token_mask: ClassVar[bool] = False
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = False

    def __init__(self, in_channels: int, series_length: int) -> None:
        super().__init__()
        self.in_channels, self.series_length = in_channels, series_length

    def _backbone(self, x: Tensor) -> Tensor:  # [B, C, T] -> [B, T', D]
        raise NotImplementedError

    def _probe_dim(self) -> int:
        with torch.no_grad():
            was = self.training
            self.eval()
            dim = int(self._backbone(torch.zeros(2, self.in_channels, self.series_length)).shape[-1])
            self.train(was)
        return dim

    def forward(self, batch: dict[str, object], token_mask: Tensor | None = None) -> Features:
        x, padding = check_series_batch(batch, self.in_channels, type(self).__name__)
        x = torch.nan_to_num(x, nan=0.0)
        tokens = self._backbone(x.transpose(1, 2))
        mask = padding if tokens.shape[1] == padding.shape[1] else None
        return Features(pooled=masked_max_pool(tokens, mask), tokens=tokens, padding_mask=mask)


class InceptionTimeEncoder(_TsaiEncoder):
    """tsai's ``InceptionTimePlus`` backbone: one token per time step, ``embed_dim = 4 * nf``.

    Args:
        in_channels: channels (filled from the dataset).
        series_length: steps per series (filled from the dataset).
        nf: filters per Inception branch (tsai: 32).
        depth: Inception modules (tsai: 6).
    """

    def __init__(self, in_channels: int, series_length: int, nf: int = 32, depth: int = 6) -> None:
        super().__init__(in_channels, series_length)
        model = _tsai_class("InceptionTimePlus", "InceptionTimePlus")(in_channels, 2, series_length, nf=nf, depth=depth)
        self.backbone = model.backbone
        self.embed_dim = self._probe_dim()

    def _backbone(self, x: Tensor) -> Tensor:
        return self.backbone(x).transpose(1, 2)  # type: ignore[no-any-return]


class TSTEncoder(_TsaiEncoder):
    """tsai's ``TSTPlus`` transformer backbone: one token per time step, ``embed_dim = d_model``.

    Args:
        in_channels, series_length: filled from the dataset.
        d_model, n_layers, n_heads, d_ff, dropout: tsai's transformer settings.
    """

    def __init__(
        self,
        in_channels: int,
        series_length: int,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 16,
        d_ff: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, series_length)
        model = _tsai_class("TSTPlus", "TSTPlus")(
            in_channels,
            2,
            series_length,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            dropout=dropout,
            max_seq_len=max(512, series_length),
        )
        self.backbone = model.backbone
        self.embed_dim = self._probe_dim()

    def _backbone(self, x: Tensor) -> Tensor:
        return self.backbone(x).transpose(1, 2)  # type: ignore[no-any-return]


class PatchTSTEncoder(_TsaiEncoder):
    """tsai's ``PatchTST`` backbone: one token per patch (channel-independent, averaged over channels).

    ``tokens`` is ``[B, patches, d_model]``; reversible instance norm (RevIN) is applied
    to the input as in PatchTST.

    Args:
        in_channels, series_length: filled from the dataset.
        patch_len, stride: patching (PatchTST: 16, 8).
        d_model, n_layers, n_heads, d_ff, dropout: transformer settings.
    """

    def __init__(
        self,
        in_channels: int,
        series_length: int,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 16,
        d_ff: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_channels, series_length)
        model = _tsai_class("PatchTST", "PatchTST")(
            in_channels,
            2,
            series_length,
            patch_len=patch_len,
            stride=stride,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            dropout=dropout,
        ).model
        self.revin, self.patch_len = model.revin, model.patch_len
        self.revin_layer = model.revin_layer if model.revin else None
        self.padding_patch_layer, self.unfold, self.backbone = model.padding_patch_layer, model.unfold, model.backbone
        self.embed_dim = self._probe_dim()

    def _backbone(self, x: Tensor) -> Tensor:
        if self.revin_layer is not None:
            x = self.revin_layer(x, torch.tensor(True, dtype=torch.bool))
        z = self.padding_patch_layer(x)
        b, c, s = z.shape
        z = self.unfold(z.reshape(-1, 1, 1, s))
        z = z.permute(0, 2, 1).reshape(b, c, -1, self.patch_len).permute(0, 1, 3, 2)
        z = self.backbone(z)  # [B, C, d_model, patches]
        return z.mean(dim=1).transpose(1, 2)  # type: ignore[no-any-return]
