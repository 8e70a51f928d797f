"""The wav2vec 2.0 waveform CNN as strided matrix products on one frames-by-channels matrix (CPU fast path).

torchaudio's CNN runs ``Conv1d`` on ``[B, C, T]`` and transposes twice per layer for the
channel LayerNorm; on CPU the copies and oneDNN's 1-D convolution backward take most of
a wav2vec 2.0 step. Here the whole batch is one row matrix ``[rows, C]`` (utterance ``b``
starts at row ``b * rows_per_utterance``), so

* a kernel-``k`` stride-``s`` convolution is ``k`` matrix products of the strided row
  views ``h[i::s]`` (BLAS reads them in place: leading dimension ``s * C``), and its
  backward is ``k`` more products each way, written into strided views in place;
* LayerNorm over channels and GELU run on contiguous rows, no transposes.

Windows that straddle two utterances produce rows no valid output ever reads (the
utterances start at multiples of the total stride, 320). Outputs equal torchaudio's
(``layer_norm`` mode), padded frames included; parameters are the torchaudio module's own.

Example:
    >>> import torch
    >>> from torchaudio.models.wav2vec2.components import _get_feature_extractor
    >>> cnn = _get_feature_extractor("layer_norm", [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2, False)
    >>> x = torch.randn(2, 4000)
    >>> torch.allclose(row_cnn(cnn, x), cnn(x, None)[0], atol=1e-4)
    True
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["row_cnn"]


def _compute_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


class _RowConv(torch.autograd.Function):
    """``out[j] = sum_i h[j * s + i] @ W_i`` for ``j < (rows - k) // s + 1`` (autocast-aware)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, weight: Tensor, stride: int) -> Tensor:
        dtype = _compute_dtype(h.device.type, h.dtype)
        hc, wc = h.to(dtype), weight.to(dtype)
        kernel = weight.shape[2]
        rows = (h.shape[0] - kernel) // stride + 1
        with torch.autocast(h.device.type, enabled=False):
            out = torch.mm(hc[0::stride][:rows], wc[:, :, 0].t())
            for i in range(1, kernel):
                out.addmm_(hc[i::stride][:rows], wc[:, :, i].t())
        ctx.save_for_backward(hc, wc)
        ctx.stride, ctx.weight_dtype, ctx.input_dtype = stride, weight.dtype, h.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        hc, wc = ctx.saved_tensors
        stride, kernel, rows = ctx.stride, wc.shape[2], grad.shape[0]
        grad = grad.to(hc.dtype)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(wc)
            for i in range(kernel):
                grad_weight[:, :, i] = grad.t() @ hc[i::stride][:rows]
            grad_weight = grad_weight.to(ctx.weight_dtype)
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.zeros_like(hc)
            for i in range(kernel):
                grad_input[i::stride][:rows].addmm_(grad, wc[:, :, i])
            grad_input = grad_input.to(ctx.input_dtype)
        return grad_input, grad_weight, None


def _blocks(cnn: nn.Module) -> list[Any]:
    """torchaudio's ``ConvLayerBlock`` modules (``conv``, ``layer_norm``, ``kernel_size``, ``stride``)."""
    return list(cast(nn.ModuleList, cnn.conv_layers))


def total_stride(cnn: nn.Module) -> int:
    """Product of the CNN's strides (320 for wav2vec 2.0): input samples per output frame."""
    product = 1
    for block in _blocks(cnn):
        product *= int(block.stride)
    return product


def row_cnn(cnn: nn.Module, x: Tensor) -> Tensor:
    """torchaudio's ``layer_norm``-mode wav2vec 2.0 feature extractor on ``x`` ``[B, T]`` -> ``[B, F, C]``."""
    batch, samples = x.shape
    step = total_stride(cnn)
    frames = samples
    for block in _blocks(cnn):
        frames = max((frames - int(block.kernel_size)) // int(block.stride) + 1, 0)
    padded = -(-samples // step) * step
    flat = F.pad(x, (0, padded - samples)).reshape(-1) if padded != samples else x.reshape(-1)
    h: Tensor | None = None
    per_utterance = padded
    for block in _blocks(cnn):
        kernel, stride = int(block.kernel_size), int(block.stride)
        weight = block.conv.weight
        # one input channel first: an unfold of the waveform is small and one plain product is best
        h = flat.unfold(0, kernel, stride) @ weight[:, 0, :].t() if h is None else _RowConv.apply(h, weight, stride)
        if block.conv.bias is not None:
            h = h + block.conv.bias
        per_utterance //= stride
        norm = block.layer_norm
        if norm is not None:
            h = F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        h = F.gelu(h)
    assert h is not None
    starts = torch.arange(batch, device=x.device) * per_utterance
    index = (starts.unsqueeze(1) + torch.arange(frames, device=x.device)).reshape(-1)
    return h.index_select(0, index).view(batch, frames, h.shape[1])
