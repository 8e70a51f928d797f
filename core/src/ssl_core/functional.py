"""Pure loss and evaluation kernels, reusable without any ssl-core class (torchmetrics-style).

Example:
    >>> import torch
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> float(nt_xent_loss(z1, z1, temperature=0.5)) < float(nt_xent_loss(z1, z2, temperature=0.5))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._distributed import all_gather_with_grad
from ._evaluation_functional import masked_mean

__all__ = ["masked_mean", "nt_xent_loss"]


def nt_xent_loss(z1: Tensor, z2: Tensor, *, temperature: float = 0.2, gather: bool = True) -> Tensor:
    """SimCLR's normalised-temperature cross-entropy between two views, ``[B, D]`` each.

    Every sample's positive is its other view; negatives are all other views in the
    (global, when ``gather`` and running distributed) batch. The loss is the mean
    over this process's ``2B`` queries, so averaging it over processes (as DDP does)
    gives the loss of the global batch.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"nt_xent_loss expects two [B, D] tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    local = z1.shape[0]
    keys1, keys2 = (all_gather_with_grad(z1), all_gather_with_grad(z2)) if gather else (z1, z2)
    world = keys1.shape[0] // local
    rank = _rank() if world > 1 else 0
    keys = torch.cat([keys1, keys2], dim=0)  # [2N, D]
    queries = torch.cat([z1, z2], dim=0)  # [2B, D]
    logits = queries @ keys.T / temperature
    total = keys1.shape[0]
    own = torch.arange(local, device=z1.device) + rank * local
    self_index = torch.cat([own, own + total])
    positive_index = torch.cat([own + total, own])
    rows = torch.arange(2 * local, device=z1.device)
    logits[rows, self_index] = float("-inf")
    return F.cross_entropy(logits, positive_index)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
