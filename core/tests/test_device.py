import contextlib

import pytest
import torch

from ssl_core._device import autocast_context, available_devices, needs_grad_scaler, resolve_device


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
