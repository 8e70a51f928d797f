"""Features of a split written batch by batch into one preallocated tensor, held as float16 when large.

:func:`ssl_core.embed` fills a :class:`FeatureBuffer` instead of concatenating per-batch
chunks (which needs twice the memory of the result at the end). With ``storage="auto"``
(what the built-in evaluators use) a split whose float32 features would exceed
:data:`FLOAT16_ABOVE_BYTES` is held as float16, which halves its memory. The kernels
that read the features compute in float32 chunk by chunk. Measured by
``benchmarks/eval_scale.py``: kNN top-1 (k = 20, 200) moves by at most 0.09 points on
CIFAR-10 embedded by random-init CNNs and by at most 0.01 points on raw pixels (see
``docs/guide.md``, "Evaluating large splits"). Features outside float16's normal range
stay float32, with a warning.

Example:
    >>> buffer = FeatureBuffer("float16", expected_rows=4)
    >>> buffer.append(torch.ones(3, 2))
    >>> buffer.append(torch.zeros(2, 2))  # one more row than expected: the buffer grows
    >>> features = buffer.result()
    >>> tuple(features.shape), features.dtype
    ((5, 2), torch.float16)
"""

from __future__ import annotations

import math
import warnings
from typing import Final, Literal

import torch
from torch import Tensor

__all__ = ["FLOAT16_ABOVE_BYTES", "FeatureBuffer", "FeatureStorage", "storage_dtype"]

FeatureStorage = Literal["auto", "float32", "float16"]
"""How embedded features are held: ``"auto"`` is float16 above :data:`FLOAT16_ABOVE_BYTES`, else float32."""

FLOAT16_ABOVE_BYTES: Final = 2 * 2**30
"""Size of a split's float32 features (rows x feature size x 4 bytes) above which ``"auto"`` holds float16 (2 GiB).

ImageNet-1k's 1.28 M train images at D = 768 are 3.9 GB in float32, so they are held
in 2.0 GB; CIFAR-10's 50 000 at D = 2048 (0.4 GB) stay float32.
"""

_FLOAT16_MAX: Final = 65504.0
_FLOAT16_SMALLEST_NORMAL: Final = 2.0**-14
_MIN_CAPACITY: Final = 1024


def storage_dtype(
    storage: FeatureStorage, nbytes_float32: int, *, float16_above_bytes: int = FLOAT16_ABOVE_BYTES
) -> torch.dtype:
    """The dtype features of ``nbytes_float32`` bytes (in float32) are held in under ``storage``.

    Example:
        >>> storage_dtype("auto", 10), storage_dtype("auto", 3 * 2**30), storage_dtype("float32", 3 * 2**30)
        (torch.float32, torch.float16, torch.float32)
    """
    if storage not in ("auto", "float32", "float16"):
        raise ValueError(f"feature_storage must be 'auto', 'float32' or 'float16', got {storage!r}")
    if storage == "float16" or (storage == "auto" and nbytes_float32 > float16_above_bytes):
        return torch.float16
    return torch.float32


class FeatureBuffer:
    """Rows of features appended batch by batch into one tensor on the CPU.

    ``expected_rows`` (the dataset's length, when known) sizes the buffer once; without
    it, or when more rows come, the buffer doubles. Under ``"auto"`` the dtype is chosen
    from the expected (or current) size; a batch outside float16's normal range (a value
    above 65504, or a non-zero row whose largest value is below ``2**-14``, where float16
    loses precision) turns a float16 buffer back to float32 with a warning, or is an
    error under ``"float16"``.
    """

    def __init__(
        self,
        storage: FeatureStorage = "float32",
        *,
        expected_rows: int | None = None,
        float16_above_bytes: int = FLOAT16_ABOVE_BYTES,
    ) -> None:
        storage_dtype(storage, 0)  # validates storage
        self.storage: FeatureStorage = storage
        self.expected_rows = expected_rows
        self.float16_above_bytes = float16_above_bytes
        self.rows = 0
        self._data: Tensor | None = None
        self._keep_float32 = storage == "float32"

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the rows are held in (``None`` before the first batch)."""
        return None if self._data is None else self._data.dtype

    def append(self, values: Tensor) -> None:
        """Copy a ``[B, ...]`` batch of features (any device, float32) after the rows already held."""
        if self._data is None:
            capacity = max(self.expected_rows or _MIN_CAPACITY, values.shape[0])
            self._data = self._allocate(capacity, values.shape[1:])
        elif values.shape[1:] != self._data.shape[1:]:
            raise ValueError(
                f"a batch of features has shape {tuple(values.shape[1:])} per row, earlier ones "
                f"{tuple(self._data.shape[1:])}"
            )
        if self._data.dtype == torch.float16 and not _fits_float16(values):
            self._leave_float16(values)
        needed = self.rows + values.shape[0]
        if needed > self._data.shape[0]:
            self._resize(max(needed, 2 * self._data.shape[0]))
        self._data[self.rows : needed].copy_(values.detach())  # a normal tensor: probes can train on it
        self.rows = needed

    def result(self) -> Tensor:
        """The ``[rows, ...]`` features appended so far (a copy only when much of the buffer is unused)."""
        if self._data is None:
            raise ValueError("no features were appended")
        if self.rows == self._data.shape[0]:
            return self._data
        held = self._data[: self.rows]
        return held.clone() if self.rows < self._data.shape[0] * 7 // 8 else held

    def _allocate(self, rows: int, row_shape: torch.Size) -> Tensor:
        nbytes = rows * math.prod(row_shape) * 4
        dtype = (
            torch.float32
            if self._keep_float32
            else storage_dtype(self.storage, nbytes, float16_above_bytes=self.float16_above_bytes)
        )
        with torch.inference_mode(False):  # allocated as a normal tensor even while embedding
            return torch.empty((rows, *row_shape), dtype=dtype)

    def _resize(self, rows: int) -> None:
        assert self._data is not None
        grown = self._allocate(rows, self._data.shape[1:])
        with torch.inference_mode(False):
            grown[: self.rows].copy_(self._data[: self.rows])
        self._data = grown

    def _leave_float16(self, values: Tensor) -> None:
        peak = float(values.detach().abs().max())
        if self.storage == "float16":
            raise ValueError(
                f"features do not fit float16 (largest |value| {peak:.3g}; float16 holds up to 65504 and loses "
                "precision below 2**-14); use feature_storage='float32' or 'auto'"
            )
        warnings.warn(
            f"features do not fit float16 (largest |value| {peak:.3g}, or a row of values below 2**-14), so this "
            "split is held in float32",
            UserWarning,
            stacklevel=4,
        )
        self._keep_float32 = True
        assert self._data is not None
        with torch.inference_mode(False):
            self._data = self._data.float()


def _fits_float16(values: Tensor) -> bool:
    """Every value at most 65504 in magnitude, and every non-zero row's largest value at least ``2**-14``."""
    row_peak = values.detach().flatten(1).abs().amax(dim=1)
    too_small = (row_peak > 0) & (row_peak < _FLOAT16_SMALLEST_NORMAL)
    return not bool((row_peak > _FLOAT16_MAX).any() or too_small.any())
