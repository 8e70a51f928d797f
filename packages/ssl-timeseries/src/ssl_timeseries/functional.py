"""Pure tensor functions behind the time-series components (usable without ssl-core).

Layout convention: a series batch is ``[B, T, C]`` (time-major, channels last), a
representation batch ``[B, T, D]``. Everything here is vectorised over the batch:
no Python loop over samples.

Example:
    >>> import torch
    >>> z1, z2 = torch.randn(4, 16, 8), torch.randn(4, 16, 8)
    >>> float(hierarchical_contrastive_loss(z1, z2)) > 0
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "binomial_mask",
    "continuous_mask",
    "geometric_mask",
    "hierarchical_contrastive_loss",
    "instance_contrastive_loss",
    "masked_max_pool",
    "masked_mse",
    "row_conv",
    "take_per_row",
    "temporal_contrastive_loss",
    "ts2vec_crops",
]


def _contrast(z: Tensor, n: int) -> Tensor:
    """Cross-entropy where row ``i`` of ``z [G, 2n, D]`` must pick ``i +/- n`` among all other rows."""
    sim = z @ z.transpose(1, 2)  # [G, 2n, 2n]
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    idx = torch.arange(2 * n, device=z.device)
    target = (idx + n) % (2 * n)
    logp = F.log_softmax(sim, dim=-1)  # [G, 2n, 2n]
    return -logp[:, idx, target].mean()


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Instance-wise contrast at every timestamp: the same sample in the other view is the positive.

    ``z1``, ``z2``: ``[B, T, D]``; the other samples of both views at the same timestamp are negatives.

    Example:
        >>> import torch
        >>> instance_contrastive_loss(torch.ones(1, 3, 2), torch.ones(1, 3, 2)).item()
        0.0
    """
    b = z1.shape[0]
    if b == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # [T, 2B, D]
    return _contrast(z, b)


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """Temporal contrast within each sample: the same timestamp in the other view is the positive.

    Example:
        >>> import torch
        >>> temporal_contrastive_loss(torch.ones(2, 1, 2), torch.ones(2, 1, 2)).item()
        0.0
    """
    t = z1.shape[1]
    if t == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=1)  # [B, 2T, D]
    return _contrast(z, t)


def _pool_pairs(z: Tensor) -> Tensor:
    """``max_pool1d(kernel_size=2)`` over time of ``[B, T, D]`` (a trailing odd step dropped), without transposes."""
    half = z.shape[1] // 2
    return torch.maximum(z[:, 0 : 2 * half : 2], z[:, 1 : 2 * half : 2])


def hierarchical_contrastive_loss(
    z1: Tensor, z2: Tensor, alpha: float = 0.5, temporal_unit: int = 0, *, parts: dict[str, Tensor] | None = None
) -> Tensor:
    """TS2Vec's loss: instance + temporal contrast, repeated over a max-pool (kernel 2) hierarchy.

    Args:
        z1, z2: aligned representations ``[B, T, D]`` of the overlap of two crops.
        alpha: weight of the instance term (``1 - alpha`` for the temporal term).
        temporal_unit: the temporal term starts at this level of the hierarchy.
        parts: when given, receives the weighted ``instance`` and ``temporal`` terms
            (detached, divided by the depth like the loss), which sum to the loss.

    Example:
        >>> import torch
        >>> z = torch.randn(3, 8, 4)
        >>> hierarchical_contrastive_loss(z, z).shape
        torch.Size([])
    """
    if z1.shape != z2.shape:
        raise ValueError(f"the two views must be aligned: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    if torch.is_autocast_enabled(z1.device.type):  # the similarities and softmax in fp32
        with torch.autocast(z1.device.type, enabled=False):
            return hierarchical_contrastive_loss(z1.float(), z2.float(), alpha, temporal_unit, parts=parts)
    loss = z1.new_zeros(())
    instance_sum = temporal_sum = z1.new_zeros(())
    depth = 0
    while z1.shape[1] > 1:
        if alpha != 0:
            term = alpha * instance_contrastive_loss(z1, z2)
            loss, instance_sum = loss + term, instance_sum + term.detach()
        if depth >= temporal_unit and alpha != 1:
            term = (1 - alpha) * temporal_contrastive_loss(z1, z2)
            loss, temporal_sum = loss + term, temporal_sum + term.detach()
        depth += 1
        z1, z2 = _pool_pairs(z1), _pool_pairs(z2)
    if z1.shape[1] == 1:
        if alpha != 0:
            term = alpha * instance_contrastive_loss(z1, z2)
            loss, instance_sum = loss + term, instance_sum + term.detach()
        depth += 1
    if parts is not None:
        parts["instance"], parts["temporal"] = instance_sum / depth, temporal_sum / depth
    return loss / depth


def take_per_row(x: Tensor, start: Tensor, length: int) -> Tensor:
    """``x[i, start[i] : start[i] + length]`` for every row at once (one gather).

    Example:
        >>> import torch
        >>> take_per_row(torch.arange(10).view(2, 5), torch.tensor([0, 2]), 3).tolist()
        [[0, 1, 2], [7, 8, 9]]
    """
    idx = start[:, None] + torch.arange(length, device=x.device)  # [B, L]
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, idx]


def ts2vec_crops(
    length: int, batch_size: int, generator: torch.Generator, min_crop: int = 2, device: torch.device | None = None
) -> tuple[Tensor, Tensor, int, int, int]:
    """Draw TS2Vec's two overlapping crops for a batch of series of ``length`` steps.

    Returns ``(start1, start2, len1, len2, overlap)``: view 1 is ``[start1, start1 + len1)``
    and view 2 ``[start2, start2 + len2)`` per sample; the last ``overlap`` steps of
    view 1 are the first ``overlap`` steps of view 2. Lengths are shared by the batch,
    offsets differ per sample.

    Example:
        >>> import torch
        >>> s1, s2, l1, l2, o = ts2vec_crops(20, 4, torch.Generator().manual_seed(0))
        >>> bool(((s1 + l1) == (s2 + o)).all())
        True
    """
    if length < min_crop:
        raise ValueError(f"series of {length} steps are shorter than the minimum crop of {min_crop}")

    def randint(low: int, high: int, size: tuple[int, ...] = (1,)) -> Tensor:  # high exclusive
        return torch.randint(low, high, size, generator=generator, device=generator.device)

    crop_l = int(randint(min_crop, length + 1))
    left = int(randint(0, length - crop_l + 1))
    right = left + crop_l
    eleft = int(randint(0, left + 1))
    eright = int(randint(right, length + 1))
    offset = randint(-eleft, length - eright + 1, (batch_size,))
    if device is not None:
        offset = offset.to(device)
    start1 = offset + eleft
    start2 = offset + left
    return start1, start2, right - eleft, eright - left, crop_l


def binomial_mask(
    shape: tuple[int, ...], p: float, generator: torch.Generator, device: torch.device | None = None
) -> Tensor:
    """Boolean mask, ``True`` (masked) with probability ``p`` independently per element.

    Example:
        >>> import torch
        >>> binomial_mask((2, 5), 0.0, torch.Generator()).any().item()
        False
    """
    draw = torch.rand(shape, generator=generator, device=generator.device)
    mask = draw < p
    return mask.to(device) if device is not None else mask


def continuous_mask(batch_size: int, length: int, generator: torch.Generator, n: int = 5, ratio: float = 0.1) -> Tensor:
    """TS2Vec's continuous mask: ``n`` spans of ``ratio * length`` steps per sample, ``True`` = masked.

    Example:
        >>> import torch
        >>> continuous_mask(2, 50, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 50])
    """
    span = max(1, int(ratio * length))
    starts = torch.randint(0, max(1, length - span + 1), (batch_size, n), generator=generator, device=generator.device)
    steps = torch.arange(length, device=starts.device)
    inside = (steps[None, None, :] >= starts[..., None]) & (steps[None, None, :] < starts[..., None] + span)
    return inside.any(dim=1)


def geometric_mask(
    shape: tuple[int, ...], generator: torch.Generator, ratio: float = 0.15, mean_length: float = 3.0
) -> Tensor:
    """Masks of alternating masked / kept runs with geometric lengths (tsai MVP, Zerveas et al.).

    Runs are along the last axis of ``shape``: masked runs have mean ``mean_length``,
    kept runs mean ``mean_length * (1 - ratio) / ratio``, so about ``ratio`` of the
    values are masked (``True``). Built as a vectorised Markov chain over time.

    Example:
        >>> import torch
        >>> m = geometric_mask((64, 200), torch.Generator().manual_seed(0), ratio=0.15)
        >>> 0.1 < m.float().mean().item() < 0.2
        True
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    if mean_length <= 0:
        raise ValueError(f"mean masked length must be positive, got {mean_length}")
    p_end_masked = 1.0 / mean_length  # masked -> kept
    p_end_kept = p_end_masked * ratio / (1.0 - ratio)  # kept -> masked
    *lead, length = shape
    dev = generator.device
    start = torch.rand(tuple(lead), generator=generator, device=dev) < ratio
    flips = torch.rand((*lead, length), generator=generator, device=dev)
    # state toggles where a uniform draw falls below the leaving probability of the current state;
    # the chain is sequential in time but vectorised over every series and channel
    mask = torch.empty((*lead, length), dtype=torch.bool, device=dev)
    state = start
    for t in range(length):
        mask[..., t] = state
        leave = torch.where(state, flips[..., t] < p_end_masked, flips[..., t] < p_end_kept)
        state = state ^ leave
    return mask


def masked_max_pool(tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """Max over time of ``[B, T, D]``, ignoring padded steps (``True`` in ``padding_mask``).

    Example:
        >>> import torch
        >>> t = torch.tensor([[[1.0], [5.0]]])
        >>> masked_max_pool(t, torch.tensor([[False, True]])).tolist()
        [[1.0]]
    """
    if padding_mask is None:
        return tokens.amax(dim=1)
    filled = tokens.masked_fill(padding_mask.unsqueeze(-1), float("-inf"))
    pooled = filled.amax(dim=1)
    return torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the ``True`` entries of ``mask`` (NaN targets ignored).

    Example:
        >>> import torch
        >>> masked_mse(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]), torch.tensor([[True, False]])).item()
        1.0
    """
    valid = mask & ~torch.isnan(target)
    if not bool(valid.any()):
        return (prediction * 0.0).sum()
    diff = (prediction - torch.nan_to_num(target)) ** 2
    return diff[valid].mean()


def _live_taps(length: int, kernel: int, dilation: int) -> list[tuple[int, int]]:
    """``(tap, offset)`` of a "same" dilated convolution's taps that reach inside a series of ``length`` steps."""
    pad = ((kernel - 1) * dilation + 1) // 2
    offsets = [(i, i * dilation - pad) for i in range(kernel)]
    return [(i, offset) for i, offset in offsets if abs(offset) < length]


def _row_segments(shapes: Sequence[tuple[int, int]]) -> Iterator[tuple[slice, int, int]]:
    """``(rows, B, T)`` for each ``(B, T)`` batch stacked in a row matrix: its rows are ``matrix[rows]``.

    Example:
        >>> [(rows.start, rows.stop, b, t) for rows, b, t in _row_segments([(2, 3), (1, 4)])]
        [(0, 6, 2, 3), (6, 10, 1, 4)]
    """
    start = 0
    for b, t in shapes:
        yield slice(start, start + b * t), b, t
        start += b * t


def _compute_dtype(x: Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class _RowConv(torch.autograd.Function):
    """``row_conv`` with a hand-written backward: two matrix products and the shifted copies."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int, shapes: tuple[tuple[int, int], ...]
    ) -> Tensor:
        out_ch, in_ch, kernel = weight.shape
        longest = max(t for _, t in shapes)
        live = _live_taps(longest, kernel, dilation)
        dtype = _compute_dtype(x)
        xc = x.to(dtype)
        stacked = weight[:, :, [i for i, _ in live]].permute(2, 0, 1).reshape(len(live) * out_ch, in_ch).to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            z = torch.mm(xc, stacked.t()).view(x.shape[0], len(live), out_ch)  # every live tap of every row at once
            centre = [j for j, (_, offset) in enumerate(live) if offset == 0]
            out = z[:, centre[0]].clone() if centre else z.new_zeros(z.shape[0], out_ch)
            if bias is not None:
                out += bias.to(dtype)
            for rows, b, t in _row_segments(shapes):
                seg_out, seg_z = out[rows].view(b, t, out_ch), z[rows].view(b, t, len(live), out_ch)
                for j, (_, offset) in enumerate(live):
                    if 0 < offset < t:  # out[t] += W_i x[t + offset]
                        seg_out[:, : t - offset] += seg_z[:, offset:, j]
                    elif -t < offset < 0:
                        seg_out[:, -offset:] += seg_z[:, : t + offset, j]
        ctx.save_for_backward(xc, stacked)
        ctx.live, ctx.shapes, ctx.kernel, ctx.has_bias = live, shapes, kernel, bias is not None
        ctx.dtypes = (x.dtype, weight.dtype)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        xc, stacked = ctx.saved_tensors
        live, shapes = ctx.live, ctx.shapes
        out_ch = grad.shape[-1]
        grad = grad.to(xc.dtype)
        grad_z = grad.new_empty(grad.shape[0], len(live), out_ch)
        for rows, b, t in _row_segments(shapes):
            seg_g, seg_z = grad[rows].view(b, t, out_ch), grad_z[rows].view(b, t, len(live), out_ch)
            for j, (_, offset) in enumerate(live):
                if offset == 0:
                    seg_z[:, :, j] = seg_g
                elif offset >= t or -offset >= t:
                    seg_z[:, :, j] = 0
                elif offset > 0:
                    seg_z[:, offset:, j] = seg_g[:, : t - offset]
                    seg_z[:, :offset, j] = 0
                else:
                    seg_z[:, : t + offset, j] = seg_g[:, -offset:]
                    seg_z[:, t + offset :, j] = 0
        flat = grad_z.view(grad.shape[0], len(live) * out_ch)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(flat, stacked).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            per_tap = torch.mm(flat.t(), xc).view(len(live), out_ch, xc.shape[1])
            grad_w = per_tap.new_zeros(out_ch, xc.shape[1], ctx.kernel)
            for j, (i, _) in enumerate(live):
                grad_w[:, :, i] = per_tap[j]
            grad_w = grad_w.to(ctx.dtypes[1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=0).to(ctx.dtypes[1])
        return grad_x, grad_w, grad_b, None, None


def row_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    dilation: int,
    shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...],
) -> Tensor:
    """A "same"-padded dilated ``Conv1d`` on series stored as rows: one matrix product for all taps.

    ``x`` is ``[sum(B * T), C]``: the batches named by ``shapes`` (``(B, T)`` each), every
    series' steps in consecutive rows. The result equals ``Conv1d(C, O, k, dilation=d,
    padding=((k - 1) * d + 1) // 2)`` applied to each ``[B, C, T]`` batch (trimmed to
    ``T`` steps, as TS2Vec's ``SamePadConv``), as rows ``[sum(B * T), O]``.

    Taps that only ever read the zero padding (``|offset| >= T``: with TS2Vec's
    dilations ``2**i``, every tap but the centre from ``2**i >= T`` on) are skipped, so
    the deep blocks cost one ``C x O`` product per row instead of three; the live
    taps share one ``[rows, C] @ [C, taps * O]`` product, and the backward is two.
    Under autocast the products run in the autocast dtype.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv1d(4, 6, 3, padding=2, dilation=2)
        >>> x = torch.randn(3, 10, 4)
        >>> rows = row_conv(x.reshape(30, 4), conv.weight, conv.bias, 2, [(3, 10)])
        >>> torch.allclose(rows.view(3, 10, 6), conv(x.transpose(1, 2)).transpose(1, 2), atol=1e-5)
        True
    """
    if x.dim() != 2 or x.shape[0] != sum(b * t for b, t in shapes):
        raise ValueError(f"row_conv expects x as [sum(B*T), C] for shapes {list(shapes)}, got {tuple(x.shape)}")
    out: Tensor = _RowConv.apply(x, weight, bias, dilation, tuple(shapes))
    return out
