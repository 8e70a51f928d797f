import contextlib

import pytest
import torch

from ssl_core import _device
from ssl_core._device import (
    autocast_context,
    available_devices,
    needs_grad_scaler,
    resolve_device,
    resolve_precision,
)


def test_resolve_auto_and_cpu() -> None:
    auto = resolve_device("auto")
    assert str(auto).split(":")[0] in {"cpu", "cuda", "mps"}
    assert resolve_device(None) == auto
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert auto == torch.device("cpu") or auto.type == "mps"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_names_available_devices() -> None:
    with pytest.raises(ValueError, match=r"'cuda:0' is not available; available: cpu"):
        resolve_device("cuda:0")


def test_cuda_index_out_of_range() -> None:
    with pytest.raises(ValueError, match="not available"):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")


def test_invalid_spec() -> None:
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        resolve_device("gpu0")


def test_available_devices_lists_cpu_first() -> None:
    assert available_devices()[0] == "cpu"


def test_bf16_autocast_on_cpu_gives_bf16_matmul() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 2)
    with autocast_context("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        out = a @ b
        lin = torch.nn.Linear(8, 2)(a)
    assert out.dtype == torch.bfloat16 and lin.dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    torch.testing.assert_close(out.float(), a @ b, rtol=2e-2, atol=5e-2)


def test_fp32_is_a_noop() -> None:
    ctx = autocast_context(torch.device("cpu"), "fp32")
    assert isinstance(ctx, contextlib.nullcontext)
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.randn(3, 3) @ torch.randn(3, 3)).dtype == torch.float32


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match=r"fp16.*CPU"):
        autocast_context("cpu", "fp16")


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_context("cpu", "int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown precision"):
        needs_grad_scaler("cpu", "fp64")  # type: ignore[arg-type]


def test_needs_grad_scaler_only_for_fp16_cuda() -> None:
    assert needs_grad_scaler("cuda", "fp16")
    assert needs_grad_scaler(torch.device("cuda", 0), "fp16")
    assert not needs_grad_scaler("cuda", "bf16")
    assert not needs_grad_scaler("cuda", "fp32")
    assert not needs_grad_scaler("cpu", "bf16")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(_device, "_cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"
    with autocast_context("cpu", "auto"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if native else torch.float32)


def test_explicit_bf16_on_a_cpu_without_it_warns_and_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_device, "_cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without native bf16.*train.precision='auto'"):
        assert resolve_precision("bf16", "cpu", warn=True) == "bf16"


def test_a_run_records_the_precision_that_auto_resolved_to(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_core._config import TrainConfig
    from ssl_core._distributed import init_distributed
    from ssl_core._train import train

    monkeypatch.setattr(_device, "_cpu_has_native_bf16", lambda: False)
    encoder, objective = torch.nn.Linear(4, 4), _SquaredNorm()
    items = [{"x": torch.randn(4)} for _ in range(8)]
    result = train(encoder=encoder, objective=objective, views=lambda batch, _g: batch, dataset=items,
                   collate=lambda chunk: {"x": torch.stack([c["x"] for c in chunk])},
                   cfg=TrainConfig(steps=2, batch_size=4, precision="auto", progress=False, device="cpu"),
                   ctx=init_distributed("cpu"))  # fmt: skip
    assert result.precision == "fp32" and result.steps == 2


class _SquaredNorm(torch.nn.Module):
    def forward(self, encoder: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": encoder(batch["x"]).square().mean()}
