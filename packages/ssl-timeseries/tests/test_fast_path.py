"""The row-matrix fast path of the TS2Vec encoder computes the same function as the Conv1d path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ssl_timeseries import CropViews, TS2VecEncoder, TS2VecObjective
from ssl_timeseries.functional import hierarchical_contrastive_loss, row_conv


def _assert_grads_close(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    """Equal to 1e-5 of each gradient's largest entry (sums over many rows are ordered differently)."""
    for a, b in zip(got, want, strict=True):
        scale = max(1.0, float(b.abs().max()))
        assert float((a - b).abs().max()) <= 1e-5 * scale, (float((a - b).abs().max()), scale)


def _reference_conv(x: torch.Tensor, conv: nn.Conv1d, trim: int) -> torch.Tensor:
    out = conv(x.transpose(1, 2))
    return (out[:, :, : out.shape[-1] - trim] if trim else out).transpose(1, 2)


@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("dilation", [1, 2, 7, 64])
def test_row_conv_equals_conv1d_values_and_gradients(kernel: int, dilation: int) -> None:
    torch.manual_seed(kernel * 100 + dilation)
    field = (kernel - 1) * dilation + 1
    conv = nn.Conv1d(5, 6, kernel, padding=field // 2, dilation=dilation)
    trim = 1 if field % 2 == 0 else 0
    shapes = [(3, 20), (2, 9), (4, 1)]  # several batches of different lengths, one shorter than the dilation
    xs = [torch.randn(b, t, 5, requires_grad=True) for b, t in shapes]
    rows = row_conv(torch.cat([x.reshape(-1, 5) for x in xs]), conv.weight, conv.bias, dilation, shapes)
    expected = torch.cat([_reference_conv(x, conv, trim).reshape(-1, 6) for x in xs])
    torch.testing.assert_close(rows, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(rows)
    got = torch.autograd.grad(rows, [*xs, conv.weight, conv.bias], grad)
    want = torch.autograd.grad(expected, [*xs, conv.weight, conv.bias], grad)
    _assert_grads_close(got, want)


def test_row_conv_checks_the_row_count() -> None:
    conv = nn.Conv1d(2, 2, 3, padding=1)
    with pytest.raises(ValueError, match="sum"):
        row_conv(torch.randn(10, 2), conv.weight, conv.bias, 1, [(2, 4)])


def _pair(channels: int, **kwargs: object) -> tuple[TS2VecEncoder, TS2VecEncoder]:
    fast = TS2VecEncoder(in_channels=channels, dropout=0.0, **kwargs)  # type: ignore[arg-type]
    reference = copy.deepcopy(fast)
    reference.fast_path = False
    return fast, reference


@pytest.mark.parametrize(("length", "channels"), [(150, 1), (24, 3), (300, 2), (5, 1)])
def test_fast_encoder_equals_reference_path(length: int, channels: int) -> None:
    torch.manual_seed(length)
    fast, reference = _pair(channels)
    x = torch.randn(4, length, channels)
    x[1, -3:] = float("nan")  # padded steps
    mask = torch.rand(4, length) < 0.5
    assert fast.uses_rows() and not reference.uses_rows()
    out, ref = fast({"x": x}, token_mask=mask), reference({"x": x}, token_mask=mask)
    torch.testing.assert_close(out.tokens, ref.tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.pooled, ref.pooled, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(ref.tokens)
    got = torch.autograd.grad(out.tokens, list(fast.parameters()), grad)
    want = torch.autograd.grad(ref.tokens, list(reference.parameters()), grad)
    _assert_grads_close(got, want)


def test_forward_many_equals_separate_calls() -> None:
    torch.manual_seed(0)
    fast, reference = _pair(2, embed_dim=32, hidden_dim=16, depth=4)
    batches = [{"x": torch.randn(3, 17, 2)}, {"x": torch.randn(3, 11, 2)}]
    masks = [torch.rand(3, 17) < 0.5, None]
    many = fast.forward_many(batches, masks)
    for out, batch, mask in zip(many, batches, masks, strict=True):
        torch.testing.assert_close(out.tokens, reference(batch, token_mask=mask).tokens, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="token masks"):
        fast.forward_many(batches, masks[:1])


def test_eval_uses_the_fast_path_and_tracing_the_conv1d_path() -> None:
    fast, reference = _pair(1)
    fast.eval()
    reference.eval()
    x = torch.randn(3, 50, 1)
    with torch.no_grad():
        assert fast.uses_rows()
        torch.testing.assert_close(fast({"x": x}).tokens, reference({"x": x}).tokens, atol=1e-5, rtol=1e-5)

    class Tokens(nn.Module):
        def __init__(self, encoder: TS2VecEncoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.encoder({"x": t}).tokens  # type: ignore[no-any-return]

    with torch.no_grad():
        traced = torch.jit.trace(Tokens(fast), (x,), check_trace=False)
    assert "_convolution" in str(traced.inlined_graph) and "_RowConv" not in str(traced.inlined_graph)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ts2vec_loss_and_gradients_equal_on_both_paths(seed: int) -> None:
    torch.manual_seed(seed)
    fast, reference = _pair(1)
    views = CropViews()({"x": torch.randn(8, 150, 1)}, torch.Generator().manual_seed(seed))
    objective = TS2VecObjective()
    loss, ref_loss = objective(fast, views)["loss"], objective(reference, views)["loss"]
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    got = torch.autograd.grad(loss, list(fast.parameters()))
    want = torch.autograd.grad(ref_loss, list(reference.parameters()))
    _assert_grads_close(got, want)


def test_fast_path_under_bf16_autocast_is_close() -> None:
    torch.manual_seed(0)
    fast, reference = _pair(1, embed_dim=32, hidden_dim=16, depth=3)
    x = torch.randn(4, 40, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast({"x": x}).tokens
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fast.parameters())
    torch.testing.assert_close(out.float(), reference({"x": x}).tokens, atol=0.1, rtol=0.05)


def test_hierarchical_loss_gradient_matches_max_pool_reference() -> None:
    torch.manual_seed(0)
    z1 = torch.randn(4, 37, 8, requires_grad=True)
    z2 = torch.randn(4, 37, 8, requires_grad=True)
    loss = hierarchical_contrastive_loss(z1, z2)
    # TS2Vec's own formulation: max_pool1d(kernel 2) over time, log-softmax without the diagonal
    a, b, total, depth = z1, z2, z1.new_zeros(()), 0
    while a.shape[1] > 1:
        for first, second, dim in ((a, b, 0), (a, b, 1)):
            z = torch.cat([first, second], dim=dim)
            z = z.transpose(0, 1) if dim == 0 else z
            n = first.shape[dim]
            sim = z @ z.transpose(1, 2)
            logits = torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]
            logits = -torch.log_softmax(logits, dim=-1)
            i = torch.arange(n)
            total = total + 0.5 * (logits[:, i, n + i - 1].mean() + logits[:, n + i, i].mean()) / 2
        depth += 1
        a = nn.functional.max_pool1d(a.transpose(1, 2), kernel_size=2).transpose(1, 2)
        b = nn.functional.max_pool1d(b.transpose(1, 2), kernel_size=2).transpose(1, 2)
    z = torch.cat([a, b], dim=0).transpose(0, 1)
    sim = z @ z.transpose(1, 2)
    logits = -torch.log_softmax(torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:], -1)
    i = torch.arange(4)
    total = (total + 0.5 * (logits[:, i, 4 + i - 1].mean() + logits[:, 4 + i, i].mean()) / 2) / (depth + 1)
    torch.testing.assert_close(loss, total, atol=1e-5, rtol=1e-5)
    got = torch.autograd.grad(loss, [z1, z2])
    want = torch.autograd.grad(total, [z1, z2])
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)


def test_fast_path_draws_the_same_dropout_as_separate_calls() -> None:
    torch.manual_seed(0)
    fast = TS2VecEncoder(in_channels=1, embed_dim=16, hidden_dim=8, depth=2, dropout=0.5)
    reference = copy.deepcopy(fast)
    reference.fast_path = False
    batches = [{"x": torch.randn(2, 9, 1)}, {"x": torch.randn(2, 6, 1)}]
    torch.manual_seed(1)
    many = fast.forward_many(batches, [None, None])
    torch.manual_seed(1)
    separate = [reference(batch) for batch in batches]
    for a, b in zip(many, separate, strict=True):
        torch.testing.assert_close(a.tokens, b.tokens, atol=1e-5, rtol=1e-5)
