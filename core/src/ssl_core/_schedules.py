"""Step-based schedules: linear warm-up followed by a half-cosine.

One function serves every scheduled quantity of an SSL run: the learning rate, the
EMA momentum of a teacher (0.996 -> 1), the teacher temperature, the weight decay
(0.04 -> 0.4). Steps are optimizer steps, counted from 0.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["cosine_schedule", "warmup_cosine_lr"]


def cosine_schedule(
    step: int,
    total_steps: int,
    start: float,
    end: float,
    *,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> float:
    """Value at ``step`` of a linear warm-up followed by a half-cosine from ``start`` to ``end``.

    For ``step < warmup_steps`` the value goes linearly from ``warmup_start`` (at step 0)
    towards ``start`` (reached at ``step == warmup_steps``). Then it follows
    ``end + (start - end) * (1 + cos(pi * p)) / 2`` with ``p`` going from 0 to 1 over
    the remaining ``total_steps - warmup_steps`` steps. From ``total_steps`` on it stays at ``end``.

    Example:
        >>> cosine_schedule(0, 100, 0.996, 1.0)
        0.996
        >>> cosine_schedule(100, 100, 0.996, 1.0)
        1.0
        >>> cosine_schedule(5, 100, 1.0, 0.0, warmup_steps=10)
        0.5
    """
    if total_steps < 0 or warmup_steps < 0:
        raise ValueError(f"total_steps and warmup_steps must be >= 0, got {total_steps} and {warmup_steps}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must not exceed total_steps ({total_steps})")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return warmup_start + (start - warmup_start) * step / warmup_steps
    decay_steps = total_steps - warmup_steps
    if step >= total_steps or decay_steps == 0:
        return float(end)
    progress = (step - warmup_steps) / decay_steps
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _WarmupCosineFactor:
    """Picklable LR multiplier; ``LambdaLR.state_dict`` stores its attributes."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        return cosine_schedule(
            step, self.total_steps, 1.0, self.min_lr_ratio, warmup_steps=self.warmup_steps, warmup_start=0.0
        )


def warmup_cosine_lr(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` scaling each group's initial LR by a warm-up + cosine factor.

    The factor is ``cosine_schedule(step, total_steps, 1.0, min_lr_ratio, warmup_steps=warmup_steps)``:
    it rises linearly from 0 (so the very first step uses LR 0 when ``warmup_steps > 0``,
    as in DINO) to 1, then decays to ``min_lr_ratio``. Call ``scheduler.step()`` once per
    optimizer step. ``state_dict()``/``load_state_dict()`` round-trip the position and
    the schedule parameters.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = warmup_cosine_lr(opt, warmup_steps=10, total_steps=100)
        >>> for _ in range(10):
        ...     opt.step()
        ...     sched.step()
        >>> round(opt.param_groups[0]["lr"], 6)
        0.1
    """
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    # Validate eagerly so that a bad configuration fails here, not at the first step.
    cosine_schedule(0, total_steps, 1.0, min_lr_ratio, warmup_steps=warmup_steps)
    return LambdaLR(optimizer, _WarmupCosineFactor(warmup_steps, total_steps, min_lr_ratio))
