"""Pure loss and evaluation kernels, reusable without any ssl-core class (torchmetrics-style).

Example:
    >>> import torch
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> float(nt_xent_loss(z1, z1, temperature=0.5)) < float(nt_xent_loss(z1, z2, temperature=0.5))
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from ._distributed import all_gather_with_grad
from ._evaluation_functional import label_coverage_problems, masked_mean, warn_if_few_labels

__all__ = ["label_coverage_problems", "masked_mean", "nt_xent_loss", "warn_if_few_labels", "warn_if_solver_capped"]


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


@contextmanager
def warn_if_solver_capped(evaluator: str, max_iter: int) -> Iterator[None]:
    """Turn scikit-learn's "stopped at max_iter" warnings inside the block into one warning naming ``evaluator``.

    Evaluators cap their solvers (``max_iter``) so that they finish in bounded time; this
    says so when a cap was hit, instead of one line per fit. Other warnings pass unchanged.

    Example:
        >>> with warn_if_solver_capped("demo.svm", max_iter=10):
        ...     pass  # fit scikit-learn models here
    """
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    capped = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            capped += 1
        else:  # not ours: pass it on unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if capped:
        warnings.warn(
            f"{evaluator}: the solver stopped at max_iter={max_iter} in {capped} fit(s) without converging; "
            "the accuracy is that of an unconverged model (often a sign of collapsed or identical representations)",
            RuntimeWarning,
            stacklevel=3,
        )
