"""The VICReg objective: an expander MLP on pooled features, then the loss from :mod:`.functional`."""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from torch import Tensor, nn

from ssl_core import ObjectiveBase, Views, all_gather_with_grad

from .functional import COV_COEFF, SIM_COEFF, STD_COEFF, vicreg_terms

__all__ = ["VICRegObjective", "expander"]


def expander(embed_dim: int, expander_dim: int = 8192, num_layers: int = 3) -> nn.Sequential:
    """VICReg's expander: ``num_layers`` linear layers, BatchNorm + ReLU between them.

    Example:
        >>> expander(16, 32, num_layers=2)(torch.randn(4, 16)).shape
        torch.Size([4, 32])
    """
    if num_layers < 1:
        raise ValueError(f"the expander needs at least 1 layer, got {num_layers}")
    layers: list[nn.Module] = []
    width = embed_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(width, expander_dim), nn.BatchNorm1d(expander_dim), nn.ReLU(inplace=True)]
        width = expander_dim
    layers.append(nn.Linear(width, expander_dim, bias=False))
    return nn.Sequential(*layers)


class VICRegObjective(ObjectiveBase):
    """VICReg (Bardes et al., 2022) on any encoder with a pooled output.

    Each view's ``Features.pooled`` goes through the expander; the loss is VICReg's
    weighted invariance + variance + covariance, averaged over all pairs of views.
    Under DDP the embeddings are gathered from every process first, so the variance
    and covariance are those of the global batch, as in the paper.

    Args:
        embed_dim: width of the encoder's pooled features (the pipeline fills it in).
        expander_dim: width of every expander layer (8192 in the paper).
        expander_layers: linear layers in the expander (3 in the paper).
        sim_coeff: weight of the invariance term (25).
        std_coeff: weight of the variance term (25).
        cov_coeff: weight of the covariance term (1).
        eps: added to the variance before the square root.

    Returns ``loss``, the three unweighted terms and ``embedding_std`` (mean std of
    the pooled features per dimension, which falls towards 0 on collapse).

    Example:
        >>> from ssl_core.testing import ToyEncoder, toy_batch, toy_views
        >>> objective = VICRegObjective(embed_dim=16, expander_dim=32)
        >>> out = objective(ToyEncoder(embed_dim=16), toy_views(toy_batch(batch_size=8)))
        >>> sorted(out)
        ['covariance', 'embedding_std', 'invariance', 'loss', 'variance']
    """

    requires_tokens: ClassVar[bool] = False
    requires_token_mask: ClassVar[bool] = False

    def __init__(
        self,
        embed_dim: int,
        expander_dim: int = 8192,
        expander_layers: int = 3,
        sim_coeff: float = SIM_COEFF,
        std_coeff: float = STD_COEFF,
        cov_coeff: float = COV_COEFF,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        if min(sim_coeff, std_coeff, cov_coeff) < 0:
            raise ValueError(f"VICReg coefficients must be >= 0, got {sim_coeff}, {std_coeff}, {cov_coeff}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.expander = expander(embed_dim, expander_dim, expander_layers)
        self.sim_coeff, self.std_coeff, self.cov_coeff, self.eps = sim_coeff, std_coeff, cov_coeff, eps

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        if len(views) < 2:
            raise ValueError(f"VICReg needs at least 2 views, got {len(views)}")
        pooled = [encoder(batch).pooled for batch in views.batches]
        embeddings = [all_gather_with_grad(self.expander(p)) for p in pooled]
        pairs = list(itertools.combinations(embeddings, 2))
        terms = [vicreg_terms(a, b, eps=self.eps) for a, b in pairs]
        invariance, variance, covariance = (torch.stack(t).mean() for t in zip(*terms, strict=True))
        loss = self.sim_coeff * invariance + self.std_coeff * variance + self.cov_coeff * covariance
        with torch.no_grad():
            embedding_std = pooled[0].float().std(dim=0).mean()
        return {
            "loss": loss,
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
            "embedding_std": embedding_std,
        }
