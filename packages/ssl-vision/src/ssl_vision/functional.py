"""Pure loss kernels of MAE and DINO, usable without ssl-core's training loop.

Example:
    >>> import torch
    >>> from ssl_vision.functional import patchify
    >>> patchify(torch.zeros(2, 3, 32, 32), 4).shape
    torch.Size([2, 64, 48])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dino_loss", "mae_loss", "patchify", "update_center_"]


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)(W/p), p*p*C]``, patches in row-major order (as a stride-p conv sees them).

    Example:
        >>> patchify(torch.arange(16.).view(1, 1, 4, 4), 2)[0, 1].tolist()
        [2.0, 3.0, 6.0, 7.0]
    """
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {patch_size}")
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


def mae_loss(prediction: Tensor, target: Tensor, norm_pix_loss: bool = True, eps: float = 1e-6) -> Tensor:
    """Mean squared error over masked patches; ``norm_pix_loss`` standardises each target patch first (MAE).

    Both are ``[M, p*p*C]`` (the masked patches only) or ``[B, N, p*p*C]``.

    Example:
        >>> t = torch.randn(5, 12)
        >>> float(mae_loss(t, t, norm_pix_loss=False))
        0.0
    """
    target = target.float()
    if norm_pix_loss:
        mean = target.mean(-1, keepdim=True)
        var = target.var(-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    return F.mse_loss(prediction.float(), target)


def dino_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    center: Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> Tensor:
    """DINO's cross-entropy between centred, sharpened teacher and student distributions.

    ``student_logits`` is ``[V, B, K]`` (global views first), ``teacher_logits`` is
    ``[G, B, K]`` (the global views). Every (teacher view, student view) pair except a
    view with itself contributes ``-sum(p_t * log p_s)``, averaged over samples and pairs.
    Computed in float32 as one batched matrix product.

    Example:
        >>> s, t = torch.randn(4, 3, 8), torch.randn(2, 3, 8)
        >>> dino_loss(s, t, torch.zeros(8)).ndim
        0
    """
    views = student_logits.shape[0]
    globals_ = teacher_logits.shape[0]
    if teacher_logits.shape[1:] != student_logits.shape[1:] or globals_ > views:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} must be [G, B, K] with G <= V for student "
            f"logits {tuple(student_logits.shape)}"
        )
    with torch.autocast(student_logits.device.type, enabled=False):  # float32 even inside a bf16 step
        teacher = F.softmax((teacher_logits.float() - center.float()) / teacher_temp, dim=-1)
        student = F.log_softmax(student_logits.float() / student_temp, dim=-1)
        # [B, G, K] @ [B, K, V] -> [B, G, V]: every teacher view against every student view
        cross = -torch.bmm(teacher.transpose(0, 1), student.permute(1, 2, 0)).mean(0)
    keep = torch.ones(globals_, views, dtype=torch.bool, device=cross.device)
    keep[torch.arange(globals_), torch.arange(globals_)] = False
    pairs = int(keep.sum())
    if pairs == 0:
        raise ValueError("DINO needs at least two views (one global and one more)")
    return cross[keep].sum() / pairs


@torch.no_grad()
def update_center_(center: Tensor, teacher_logits: Tensor, momentum: float = 0.9) -> Tensor:
    """In place: ``center = momentum * center + (1 - momentum) * mean(teacher_logits)`` over all rows.

    Under ``torch.distributed`` the batch mean is averaged over processes.

    Example:
        >>> c = torch.zeros(3)
        >>> update_center_(c, torch.ones(2, 4, 3), 0.5).tolist()
        [0.5, 0.5, 0.5]
    """
    rows = teacher_logits.reshape(-1, teacher_logits.shape[-1]).float()
    batch_center = rows.mean(0)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(batch_center)
        batch_center /= torch.distributed.get_world_size()
    center.mul_(momentum).add_(batch_center.to(center.dtype), alpha=1 - momentum)
    return center
