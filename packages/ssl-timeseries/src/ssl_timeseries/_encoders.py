"""The TS2Vec encoder: input projection, timestamp masking, residual dilated convolutions.

Batches are ``{"x": [B, T, C], "padding_mask": [B, T]?}``; NaN values mark missing
or padded steps (a step with any NaN channel is treated as missing, as in TS2Vec).

Example:
    >>> import torch
    >>> enc = TS2VecEncoder(in_channels=1, embed_dim=32, hidden_dim=16, depth=2)
    >>> out = enc({"x": torch.randn(4, 30, 1)})
    >>> tuple(out.tokens.shape), tuple(out.pooled.shape)
    ((4, 30, 32), (4, 32))
"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import EncoderBase, Features

from .functional import _row_segments, masked_max_pool, row_conv

__all__ = ["TS2VecEncoder", "check_series_batch"]


def check_series_batch(batch: dict[str, object], in_channels: int, who: str) -> tuple[Tensor, Tensor]:
    """Validate ``batch["x"]`` as ``[B, T, in_channels]``; return it and the ``[B, T]`` padding mask.

    The padding mask is ``batch["padding_mask"]`` (if any) OR steps holding a NaN.

    Example:
        >>> import torch
        >>> x, pad = check_series_batch({"x": torch.tensor([[[1.0], [float("nan")]]])}, 1, "enc")
        >>> pad.tolist()
        [[False, True]]
    """
    x = batch.get("x")
    if not isinstance(x, Tensor):
        raise TypeError(f"{who} expects batch['x'] to be a tensor [B, T, C], got {type(x).__name__}")
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3:
        raise ValueError(f"{who} expects x of shape [B, T, C], got {tuple(x.shape)}")
    if x.shape[-1] != in_channels:
        kind = "multivariate" if x.shape[-1] > 1 else "univariate"
        raise ValueError(
            f"{who} was built for {in_channels} channel(s) but the batch is {kind} with {x.shape[-1]} channels "
            f"(x is {tuple(x.shape)}); drop in_channels from [encoder] so the dataset's value is used, "
            f"or pick a dataset with {in_channels} channel(s)"
        )
    padding = torch.isnan(x).any(dim=-1)
    given = batch.get("padding_mask")
    if isinstance(given, Tensor) and given.shape == padding.shape:
        padding = padding | given.to(torch.bool)
    return x, padding


class _SamePadConv(nn.Module):
    """A dilated Conv1d whose output has the input's length (TS2Vec's ``SamePadConv``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, padding=field // 2, dilation=dilation)
        self.trim = 1 if field % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T] -> [B, O, T]
        out: Tensor = self.conv(x)
        return out[:, :, : out.shape[-1] - self.trim] if self.trim else out


class _ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, final: bool) -> None:
        super().__init__()
        self.conv1 = _SamePadConv(in_ch, out_ch, kernel_size, dilation)
        self.conv2 = _SamePadConv(out_ch, out_ch, kernel_size, dilation)
        self.projector = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch or final else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x))
        x = self.conv2(F.gelu(x))
        return x + residual


class _Network(nn.Module):
    def __init__(self, in_channels: int, embed_dim: int, hidden_dim: int, depth: int, kernel_size: int) -> None:
        super().__init__()
        self.input_fc = nn.Linear(in_channels, hidden_dim)
        widths = [hidden_dim] * depth + [embed_dim]
        blocks = []
        previous = hidden_dim
        for i, width in enumerate(widths):
            blocks.append(_ConvBlock(previous, width, kernel_size, dilation=2**i, final=i == len(widths) - 1))
            previous = width
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor, hidden: Tensor) -> Tensor:  # [B, T, C], [B, T] -> [B, T, D]
        h = self.input_fc(x).masked_fill(hidden.unsqueeze(-1), 0.0)
        out: Tensor = self.blocks(h.transpose(1, 2)).transpose(1, 2)
        return out

    def forward_rows(self, xs: list[Tensor], hiddens: list[Tensor]) -> Tensor:
        """The same function on several ``[B, T, C]`` batches at once, as one row matrix ``[sum B*T, D]``.

        Each layer is a matrix product over all rows (:func:`.functional.row_conv`), with no
        transposes; the result equals ``forward`` on each batch, rows in order.
        """
        shapes = [(x.shape[0], x.shape[1]) for x in xs]
        x = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
        hidden = torch.cat([m.reshape(-1) for m in hiddens])
        rows = x.shape[0]
        pad = -rows % _ROW_BUCKET if _onednn_autocast(x.device) else 0
        if pad:  # masked rows, each its own 1-step series: read by no real row, dropped below
            x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
            hidden = torch.cat([hidden, hidden.new_ones(pad)])
            shapes.append((pad, 1))
        h: Tensor = self.input_fc(x).masked_fill(hidden.unsqueeze(-1), 0.0)
        for block in self.blocks:
            h = _block_rows(cast(_ConvBlock, block), h, shapes)
        return h[:rows] if pad else h


_ROW_BUCKET = 256
"""Under CPU autocast the row count is padded to a multiple of this (see :func:`_onednn_autocast`)."""


def _onednn_autocast(device: torch.device) -> bool:
    """CPU autocast to bf16 / fp16: oneDNN compiles a kernel per matrix shape, so the row count is bucketed.

    Crops change length every step; without buckets nearly every product is a new shape
    and its compilation costs more than the product (bf16 was slower than fp32).
    """
    if device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return False
    return torch.get_autocast_dtype("cpu") in (torch.bfloat16, torch.float16)


def _block_rows(block: _ConvBlock, h: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
    """One residual block on rows ``[sum B*T, C]`` (GELU before each convolution, as TS2Vec)."""
    conv1, conv2 = block.conv1.conv, block.conv2.conv
    if block.projector is None:
        residual = h
    else:
        weight = block.projector.weight
        residual = F.linear(h, weight.view(weight.shape[0], weight.shape[1]), block.projector.bias)
    a = row_conv(F.gelu(h), conv1.weight, conv1.bias, conv1.dilation[0], shapes)
    b = row_conv(F.gelu(a), conv2.weight, conv2.bias, conv2.dilation[0], shapes)
    return b + residual


def _tracing() -> bool:
    """Under TorchScript, tracing, ``torch.compile`` or ``torch.export`` (the exporters see the Conv1d path)."""
    checks = [getattr(torch.jit, "is_scripting", None), getattr(torch.jit, "is_tracing", None)]
    checks += [torch.compiler.is_compiling, getattr(torch.compiler, "is_exporting", None)]
    return any(callable(check) and check() for check in checks)


def _loaded_average(module: nn.Module, incompatible: object) -> None:
    """After ``load_state_dict``: the loaded weights are already in the loaded average (a resume)."""
    if isinstance(module, TS2VecEncoder):
        module._seen_version = module._weights_version() if int(module._count()) > 0 else None


class TS2VecEncoder(EncoderBase):
    """TS2Vec's dilated CNN (Yue et al., AAAI 2022): a representation per timestamp.

    ``input_fc`` projects each step to ``hidden_dim``; masked steps (``token_mask``,
    ``True`` = masked) and missing steps (NaN / ``padding_mask``) are zeroed there;
    ``depth`` residual blocks with dilation ``2**i`` and a final block to ``embed_dim``
    follow. ``Features.tokens`` is ``[B, T, embed_dim]``; ``pooled`` is the max over
    non-padded steps (TS2Vec's instance representation).

    Args:
        in_channels: channels of the series (filled from the dataset).
        embed_dim: output dimension per timestamp (TS2Vec: 320).
        hidden_dim: width of the residual blocks (64).
        depth: number of hidden residual blocks (10).
        kernel_size: convolution kernel (3).
        dropout: dropout on the output representation in training (0.1).
        average_weights: keep the running mean of the weights (TS2Vec's ``AveragedModel``:
            the initial weights and the weights after every optimizer step, each once) and
            use it in eval mode. TS2Vec encodes with the averaged model; here it is opt-in
            because it scored lower on ArrowHead (docs/timeseries.md).
        fast_path: run the convolutions as matrix products on one row matrix for all
            crops (:meth:`forward_many`, :func:`~ssl_timeseries.functional.row_conv`): the
            same function and parameters as the ``Conv1d`` path, which tracing, export,
            the averaged weights and ``fast_path = false`` use.

    Example:
        >>> import torch
        >>> enc = TS2VecEncoder(in_channels=2, embed_dim=8, hidden_dim=4, depth=1)
        >>> enc({"x": torch.randn(3, 10, 2)}, token_mask=torch.zeros(3, 10, dtype=torch.bool)).pooled.shape
        torch.Size([3, 8])
    """

    modality: ClassVar[str] = "timeseries"
    supports_token_mask: ClassVar[bool] = True
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        embed_dim: int = 320,
        hidden_dim: int = 64,
        depth: int = 10,
        kernel_size: int = 3,
        dropout: float = 0.1,
        average_weights: bool = False,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        if depth < 0:
            raise ValueError(f"depth must be non-negative, got {depth}")
        self.in_channels, self.embed_dim, self.hidden_dim, self.depth = in_channels, embed_dim, hidden_dim, depth
        self.net = _Network(in_channels, embed_dim, hidden_dim, depth, kernel_size)
        self.repr_dropout = nn.Dropout(dropout)
        self.average_weights, self.fast_path = average_weights, fast_path
        self._param_names = [name for name, _ in self.net.named_parameters()]
        self._seen_version: int | None = None  # parameter versions last folded into the average
        if average_weights:
            self.register_load_state_dict_post_hook(_loaded_average)
            self.register_buffer("avg_count", torch.zeros((), dtype=torch.long))
            for i, (_, param) in enumerate(self.net.named_parameters()):
                self.register_buffer(f"avg_{i}", param.detach().clone())

    def _inputs(self, batch: dict[str, object], token_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, padding, hidden)``: NaN-free input, padded steps, and steps zeroed after ``input_fc``."""
        x, padding = check_series_batch(batch, self.in_channels, type(self).__name__)
        x = torch.nan_to_num(x, nan=0.0)
        hidden = padding
        if token_mask is not None:
            if token_mask.shape != padding.shape:
                raise ValueError(f"token_mask must be [B, T] = {tuple(padding.shape)}, got {tuple(token_mask.shape)}")
            hidden = hidden | token_mask.to(torch.bool)
        if self.average_weights and (not self.training or torch.is_grad_enabled()):
            self._catch_up_average()
        return x, padding, hidden

    def uses_rows(self) -> bool:
        """Whether the forward takes the row-matrix path (``fast_path``, not while tracing or exporting)."""
        return self.fast_path and not _tracing()

    def forward(self, batch: dict[str, object], token_mask: Tensor | None = None) -> Features:
        return self.forward_many([batch], [token_mask])[0]

    def forward_many(self, batches: list[dict[str, object]], token_masks: list[Tensor | None]) -> list[Features]:
        """``[self(batch, token_mask=m) for batch, m in zip(batches, token_masks)]``, in one pass.

        With ``fast_path`` the batches, which may differ in length, are stacked as one row
        matrix, so every layer is one matrix product for all of them (TS2Vec's two crops).
        The outputs are the same as separate calls, dropout draws included.
        """
        if len(batches) != len(token_masks):
            raise ValueError(f"{len(batches)} batches but {len(token_masks)} token masks")
        inputs = [self._inputs(batch, mask) for batch, mask in zip(batches, token_masks, strict=True)]
        rows = False
        if self.average_weights and not self.training and int(self._count()) > 0:
            averaged = {name: getattr(self, f"avg_{i}") for i, name in enumerate(self._param_names)}
            tokens = [torch.func.functional_call(self.net, averaged, (x, hidden)) for x, _, hidden in inputs]
        elif self.uses_rows():
            rows = True
            matrix = self.net.forward_rows([x for x, _, _ in inputs], [h for _, _, h in inputs])
            shapes = [(x.shape[0], x.shape[1]) for x, _, _ in inputs]
            tokens = [matrix[rows].view(b, t, matrix.shape[-1]) for rows, b, t in _row_segments(shapes)]
        else:
            tokens = [self.net(x, hidden) for x, _, hidden in inputs]
        out = []
        for z, (_, padding, _) in zip(tokens, inputs, strict=True):
            if rows and self.training and self.repr_dropout.p > 0:
                # dropout draws its noise in memory order: on the Conv1d path's [B, D, T] layout, batch by
                # batch, it draws the same noise as separate calls on that path
                z = z.transpose(1, 2).contiguous().transpose(1, 2)
            z = self.repr_dropout(z)
            out.append(Features(pooled=masked_max_pool(z, padding), tokens=z, padding_mask=padding))
        return out

    def _count(self) -> Tensor:
        count: Tensor = self.get_buffer("avg_count")
        return count

    def _weights_version(self) -> int:
        # in-place updates (optimizer steps, load_state_dict) bump a tensor's version counter
        return sum(p._version for p in self.net.parameters())

    def _catch_up_average(self) -> None:
        """Fold the current weights into the average once per new set of weights.

        Matches ``torch.optim.swa_utils.AveragedModel`` as TS2Vec uses it: the initial
        weights, then the weights after every optimizer step (the last one is folded in
        by the next forward, e.g. the first evaluation), each counted once.
        """
        version = self._weights_version()
        if version != self._seen_version:
            self._update_average()
            self._seen_version = version

    @torch.no_grad()
    def _update_average(self) -> None:
        count = self._count()
        count.add_(1)
        for i, param in enumerate(self.net.parameters()):
            average: Tensor = self.get_buffer(f"avg_{i}")
            average.add_((param.detach() - average) / count)
