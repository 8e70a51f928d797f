"""Throughput and peak-memory measurements for training logs and benchmarks."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

import torch

__all__ = ["ThroughputMeter", "peak_memory_mb", "reset_peak_memory"]


class ThroughputMeter:
    """Samples per second over the last ``window`` updates, plus running totals.

    Call :meth:`update` after each step with the number of samples it processed. The
    clock starts at construction or :meth:`reset` (call ``reset()`` after warm-up or
    compilation to exclude them). ``clock`` is injectable for tests.

    Example:
        >>> ticks = iter([0.0, 1.0, 2.0])
        >>> meter = ThroughputMeter(window=10, clock=lambda: next(ticks))
        >>> meter.update(32)
        >>> meter.update(32)
        >>> meter.rate(), meter.total
        (32.0, 64)
    """

    def __init__(self, window: int = 20, *, clock: Callable[[], float] = time.perf_counter) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._clock = clock
        self._events: deque[tuple[float, int]] = deque(maxlen=window + 1)
        self.total = 0
        self._start = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget all updates and restart the clock now."""
        self._start = self._clock()
        self._events.clear()
        self._events.append((self._start, 0))
        self.total = 0

    def update(self, n: int) -> None:
        """Record that ``n`` samples were processed since the previous update."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._events.append((self._clock(), n))
        self.total += n

    def rate(self) -> float:
        """Samples/s over the last ``window`` updates (0.0 before the first update)."""
        if len(self._events) < 2:
            return 0.0
        span = self._events[-1][0] - self._events[0][0]
        samples = sum(n for _, n in list(self._events)[1:])
        return samples / span if span > 0 else 0.0

    def elapsed(self) -> float:
        """Seconds from the start (or last reset) to the latest update."""
        return self._events[-1][0] - self._start

    def overall_rate(self) -> float:
        """Samples/s since the start (or last reset)."""
        elapsed = self.elapsed()
        return self.total / elapsed if elapsed > 0 else 0.0


def peak_memory_mb(device: str | torch.device) -> float | None:
    """Peak memory in MiB: CUDA ``max_memory_allocated`` on a CUDA device, the process's peak RSS on CPU.

    The CPU figure is the whole process's maximum resident set size (Python, libraries
    and tensors alike) and cannot be reset. Returns ``None`` where no measure is available
    (MPS, or CPU on platforms without the ``resource`` module).

    Example:
        >>> peak_memory_mb("cpu") is None or peak_memory_mb("cpu") > 0
        True
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return None
        return torch.cuda.max_memory_allocated(dev) / 2**20
    if dev.type == "cpu":
        try:
            import resource
        except ImportError:  # Windows
            return None
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10
    return None


def reset_peak_memory(device: str | torch.device) -> None:
    """Reset the CUDA peak-memory counter of ``device``; a no-op elsewhere.

    Example:
        >>> reset_peak_memory("cpu")
    """
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(dev)
