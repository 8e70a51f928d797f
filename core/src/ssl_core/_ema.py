"""EMA teachers (BYOL, DINO, data2vec): a frozen copy of the student updated by lerp."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_update_", "make_teacher", "unwrap_module"]


def unwrap_module(module: nn.Module) -> nn.Module:
    """Return the user module under ``DistributedDataParallel``/``DataParallel`` and ``torch.compile`` wrappers.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> unwrap_module(torch.nn.DataParallel(net)) is net
        True
    """
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
            continue
        inner = getattr(module, "_orig_mod", None)  # torch._dynamo's OptimizedModule
        if isinstance(inner, nn.Module):
            module = inner
            continue
        return module


def make_teacher(module: nn.Module) -> nn.Module:
    """Deep-copy the (unwrapped) student into a teacher with no gradients, in eval mode.

    Wrappers (DDP, ``torch.compile``) are removed before copying so the teacher is a
    plain module. The teacher's parameters have ``requires_grad=False`` and it is put in
    ``eval()`` mode (dropout off, batch-norm uses running statistics); a training loop
    that calls ``.train()`` on a parent module should call ``teacher.eval()`` again.

    Example:
        >>> student = torch.nn.Linear(3, 3)
        >>> teacher = make_teacher(student)
        >>> any(p.requires_grad for p in teacher.parameters()), teacher.training
        (False, False)
    """
    teacher = copy.deepcopy(unwrap_module(module))
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: ``teacher_param = momentum * teacher_param + (1 - momentum) * student_param``.

    Parameters are matched by name (after unwrapping DDP/compiled wrappers on both sides)
    and updated with one ``torch._foreach_lerp_`` per (device, dtype) group; floating and
    integer buffers (batch-norm statistics, counters) are copied from the student.
    ``momentum=1`` leaves the teacher entirely untouched, buffers included;
    ``momentum=0`` makes it an exact copy of the student.

    Example:
        >>> student = torch.nn.Linear(2, 2)
        >>> teacher = make_teacher(student)
        >>> with torch.no_grad():
        ...     _ = student.weight.add_(1.0)
        >>> ema_update_(teacher, student, momentum=0.0)
        >>> torch.equal(teacher.weight, student.weight)
        True
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if momentum == 1.0:
        return
    teacher_mod, student_mod = unwrap_module(teacher), unwrap_module(student)
    t_params = dict(teacher_mod.named_parameters())
    s_params = dict(student_mod.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(s_params.keys() - t_params.keys())[:5]
        extra = sorted(t_params.keys() - s_params.keys())[:5]
        raise ValueError(f"teacher and student parameters differ: missing in teacher {missing}, extra {extra}")

    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for name, t in t_params.items():
        s = s_params[name]
        if t.shape != s.shape:
            raise ValueError(f"parameter {name!r}: teacher shape {tuple(t.shape)} != student {tuple(s.shape)}")
        ts, ss = groups.setdefault((t.device, t.dtype), ([], []))
        ts.append(t.detach())
        ss.append(s.detach().to(device=t.device, dtype=t.dtype))
    weight = 1.0 - momentum
    for ts, ss in groups.values():
        torch._foreach_lerp_(ts, ss, weight)

    s_buffers = dict(student_mod.named_buffers())
    for name, buf in teacher_mod.named_buffers():
        src = s_buffers.get(name)
        if src is not None and src.shape == buf.shape:
            buf.copy_(src)
