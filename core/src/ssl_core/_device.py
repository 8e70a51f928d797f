"""Device selection and mixed-precision contexts."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "Precision",
    "autocast_context",
    "available_devices",
    "move_to_device",
    "needs_grad_scaler",
    "resolve_device",
]

Precision = Literal["fp32", "bf16", "fp16"]

_PRECISIONS = ("fp32", "bf16", "fp16")


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


def autocast_context(device: str | torch.device, precision: Precision) -> contextlib.AbstractContextManager[None]:
    """An autocast context for ``precision`` on ``device``; ``"fp32"`` gives a ``nullcontext``.

    ``"bf16"`` requires bf16 support on the device (checked on CUDA); ``"fp16"`` is refused
    on CPU (use ``"bf16"``). On CUDA, ``"fp16"`` also needs a ``torch.amp.GradScaler``
    (see :func:`needs_grad_scaler`).

    Example:
        >>> with autocast_context("cpu", "bf16"):
        ...     y = torch.ones(2, 2) @ torch.ones(2, 2)
        >>> y.dtype
        torch.bfloat16
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {_PRECISIONS}")
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
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {_PRECISIONS}")
    return precision == "fp16" and torch.device(device).type == "cuda"


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
