"""Device selection and mixed-precision contexts."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Mapping
from typing import Any, get_args

import torch
from torch import Tensor

from ._config import Precision  # one definition: _config's, which imports no torch

__all__ = [
    "Precision",
    "autocast_context",
    "available_devices",
    "move_to_device",
    "native_bf16",
    "needs_grad_scaler",
    "resolve_device",
    "resolve_precision",
]

_PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of the devices this process can use, e.g. ``["cpu", "cuda:0", "cuda:1"]``.

    Example:
        >>> "cpu" in available_devices()
        True
    """
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None``/``"cpu"``/``"cuda"``/``"cuda:1"``/``"mps"`` into an available ``torch.device``.

    ``"auto"`` (or ``None``) picks CUDA if available, else MPS, else CPU. Asking for a
    device that is not available raises ``ValueError`` listing the available ones.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec.strip() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"invalid device {spec!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' "
            f"(available: {', '.join(available_devices())})"
        ) from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        ok = torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    elif device.type == "mps":
        ok = _mps_available()
    else:
        ok = True  # other backends (xpu, privateuse1, ...): let torch report problems when used
    if not ok:
        raise ValueError(f"device {str(device)!r} is not available; available: {', '.join(available_devices())}")
    return device


@functools.cache
def _cpu_has_native_bf16() -> bool:
    is_supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(is_supported()) if is_supported is not None else False
    except RuntimeError:  # pragma: no cover - a build without oneDNN
        return False


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware, so that bf16 autocast is faster than fp32.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: oneDNN's bf16 support (AVX-512 or AMX;
    on an AVX2-only CPU a bf16 matmul is emulated and was measured about 95x slower than
    fp32). Other devices: ``False``.

    Example:
        >>> isinstance(native_bf16("cpu"), bool)
        True
    """
    device_type = torch.device(device).type
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device_type == "cpu" and _cpu_has_native_bf16()


def resolve_precision(precision: Precision, device: str | torch.device, *, warn: bool = False) -> Precision:
    """The precision to run: ``"auto"`` is ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``.

    Other values are returned as given; with ``warn=True``, ``"bf16"`` on a CPU without native
    bf16 warns that it will be much slower than ``"fp32"`` (it still runs: the user asked).
    Recipes ask for ``"auto"``.

    Example:
        >>> resolve_precision("auto", "cpu") in ("bf16", "fp32")
        True
        >>> resolve_precision("fp32", "cpu")
        'fp32'
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {_PRECISIONS}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if warn and precision == "bf16" and torch.device(device).type == "cpu" and not _cpu_has_native_bf16():
        warnings.warn(
            "precision 'bf16' on a CPU without native bf16 (no AVX-512 or AMX): bf16 matmuls are emulated "
            "and run many times slower than fp32 here; set train.precision='auto' (bf16 only where it is "
            "native) or 'fp32'",
            UserWarning,
            stacklevel=2,
        )
    return precision


def autocast_context(device: str | torch.device, precision: Precision) -> contextlib.AbstractContextManager[None]:
    """An autocast context for ``precision`` on ``device``; ``"fp32"`` gives a ``nullcontext``.

    ``"bf16"`` requires bf16 support on the device (checked on CUDA); ``"fp16"`` is refused
    on CPU (use ``"bf16"``). ``"auto"`` is resolved by :func:`resolve_precision`. On CUDA,
    ``"fp16"`` also needs a ``torch.amp.GradScaler`` (see :func:`needs_grad_scaler`).

    Example:
        >>> with autocast_context("cpu", "bf16"):
        ...     y = torch.ones(2, 2) @ torch.ones(2, 2)
        >>> y.dtype
        torch.bfloat16
    """
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    if precision == "fp16" and device_type == "cpu":
        raise ValueError("precision 'fp16' is not supported on CPU; use 'bf16' or 'fp32'")
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' is not supported by this CUDA device; use 'fp16' or 'fp32'")
    is_available = getattr(torch.amp, "is_autocast_available", None)
    if is_available is not None and not is_available(device_type):
        raise ValueError(f"autocast is not available on device type {device_type!r}; use precision 'fp32'")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def needs_grad_scaler(device: str | torch.device, precision: Precision) -> bool:
    """Whether training needs a ``torch.amp.GradScaler``: only ``"fp16"`` on CUDA.

    Example:
        >>> needs_grad_scaler("cpu", "bf16"), needs_grad_scaler("cuda", "fp16")
        (False, True)
    """
    return resolve_precision(precision, device) == "fp16" and torch.device(device).type == "cuda"


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``; other objects pass through.

    Objects with a ``.to(device)`` method (e.g. PyG ``Data``) are moved too.
    """
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    to = getattr(batch, "to", None)
    return to(device) if callable(to) else batch
