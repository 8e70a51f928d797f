"""VICReg's loss as pure functions of two embedding batches, usable without any ssl-core class.

Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022. With embeddings ``z_a, z_b`` of shape ``[N, D]``:

- invariance: mean squared error between the two views;
- variance: hinge on the standard deviation of each dimension, ``mean(relu(1 - std))``,
  averaged over both views, so no dimension collapses to a constant;
- covariance: sum of squared off-diagonal covariances divided by ``D``, summed over
  both views, so dimensions carry different information.

The paper weights them 25 / 25 / 1.

Example:
    >>> import torch
    >>> z = torch.randn(64, 8)
    >>> float(invariance_loss(z, z))
    0.0
    >>> float(vicreg_loss(z, z + 0.1 * torch.randn(64, 8))) < float(vicreg_loss(z, torch.zeros(64, 8)))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["covariance_loss", "invariance_loss", "variance_loss", "vicreg_loss", "vicreg_terms"]

SIM_COEFF = 25.0
STD_COEFF = 25.0
COV_COEFF = 1.0


def _check_pair(z_a: Tensor, z_b: Tensor) -> None:
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        shapes = f"{tuple(z_a.shape)} and {tuple(z_b.shape)}"
        raise ValueError(f"VICReg expects two [N, D] tensors of equal shape, got {shapes}")
    if z_a.shape[0] < 2:
        raise ValueError(f"VICReg's variance and covariance terms need at least 2 samples, got {z_a.shape[0]}")


def invariance_loss(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Mean squared error between the embeddings of two views, ``[N, D]`` each.

    Example:
        >>> import torch
        >>> float(invariance_loss(torch.zeros(2, 3), torch.ones(2, 3)))
        1.0
    """
    return F.mse_loss(z_a, z_b)


def variance_loss(z: Tensor, *, target_std: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Hinge on each dimension's standard deviation: ``mean(relu(target_std - sqrt(var + eps)))``.

    Example:
        >>> import torch
        >>> round(float(variance_loss(torch.zeros(4, 3))), 2)  # collapsed: every std is 0
        0.99
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(target_std - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of the ``[D, D]`` covariance of ``z``, divided by ``D``.

    Example:
        >>> import torch
        >>> x = torch.randn(100, 1)
        >>> float(covariance_loss(torch.cat([x, x], dim=1))) > float(covariance_loss(torch.randn(100, 2)))
        True
    """
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag_embed(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def vicreg_terms(z_a: Tensor, z_b: Tensor, *, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """The unweighted ``(invariance, variance, covariance)`` terms, computed in float32.

    Example:
        >>> import torch
        >>> inv, var, cov = vicreg_terms(torch.randn(16, 4), torch.randn(16, 4))
        >>> inv.dim(), var.dim(), cov.dim()
        (0, 0, 0)
    """
    _check_pair(z_a, z_b)
    z_a, z_b = z_a.float(), z_b.float()
    invariance = invariance_loss(z_a, z_b)
    variance = (variance_loss(z_a, eps=eps) + variance_loss(z_b, eps=eps)) / 2
    covariance = covariance_loss(z_a) + covariance_loss(z_b)
    return invariance, variance, covariance


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    *,
    sim_coeff: float = SIM_COEFF,
    std_coeff: float = STD_COEFF,
    cov_coeff: float = COV_COEFF,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg's loss between two ``[N, D]`` embedding batches, with the paper's 25 / 25 / 1 weights.

    Example:
        >>> import torch
        >>> vicreg_loss(torch.randn(32, 16), torch.randn(32, 16)).shape
        torch.Size([])
    """
    invariance, variance, covariance = vicreg_terms(z_a, z_b, eps=eps)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
