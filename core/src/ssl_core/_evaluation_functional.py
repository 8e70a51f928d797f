"""Pure tensor kernels behind the evaluators (re-exported from ``ssl_core.functional``).

Each function takes tensors and returns tensors or floats; nothing here runs an
encoder, trains a model or keeps state, so the kernels can be reused and tested
on their own.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "infer_num_classes",
    "knn_predict",
    "label_coverage_problems",
    "layer_weighted_sum",
    "masked_mean",
    "standardize",
    "topk_accuracy",
    "warn_if_few_labels",
]


def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int,
    batch_size: int = 1024,
) -> Tensor:
    """Weighted k-nearest-neighbour class scores (DINO's kNN classifier).

    Features are L2-normalised; each test row votes with its ``k`` most
    cosine-similar train rows, each vote weighted by ``exp(similarity / temperature)``
    and summed per class. ``k`` is clipped to the number of train rows; test rows
    are processed ``batch_size`` at a time to bound memory.

    Args:
        train_feats: ``[N_train, D]`` train features.
        train_labels: ``[N_train]`` integer class indices.
        test_feats: ``[N_test, D]`` test features.
        k: number of neighbours (``>= 1``).
        temperature: softmax-style temperature (``> 0``).
        num_classes: number of classes ``C``.
        batch_size: test rows per similarity chunk.

    Returns:
        ``[N_test, C]`` float scores; the arg-max is the prediction.

    Example:
        >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> scores = knn_predict(train, torch.tensor([0, 0, 1]), torch.tensor([[1.0, 0.05]]),
        ...                      k=2, temperature=0.07, num_classes=2)
        >>> scores.argmax(dim=1).tolist()
        [0]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"expected [N, D] train and test features with the same D, got {tuple(train_feats.shape)} "
            f"and {tuple(test_feats.shape)}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"train_labels must be [{train_feats.shape[0]}], got {tuple(train_labels.shape)}")
    if train_feats.shape[0] == 0:
        raise ValueError("knn_predict needs at least one train row")
    k = min(k, train_feats.shape[0])
    train_unit = F.normalize(train_feats.float(), dim=1)
    test_unit = F.normalize(test_feats.float(), dim=1)
    labels = train_labels.long().to(train_unit.device)
    chunks = []
    for test_chunk in test_unit.split(batch_size):
        similarity = test_chunk @ train_unit.T  # [b, N_train]
        top_similarity, top_index = similarity.topk(k, dim=1)
        votes = (top_similarity / temperature).exp()
        scores = torch.zeros(test_chunk.shape[0], num_classes, device=test_chunk.device)
        chunks.append(scores.scatter_add_(1, labels[top_index], votes))
    if not chunks:
        return torch.zeros(0, num_classes, device=test_unit.device)
    return torch.cat(chunks)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Fraction of rows whose true label is among the ``k`` highest scores.

    Example:
        >>> topk_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        0.5
    """
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows but labels has {labels.shape[0]}")
    if scores.shape[0] == 0:
        raise ValueError("topk_accuracy needs at least one row")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    hits = (top == labels.to(top.device).long().unsqueeze(1)).any(dim=1)
    return int(hits.sum().item()) / hits.numel()  # exact ratio, not a float32 mean


def masked_mean(states: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """Mean over the token axis of ``[B, T, D]`` states, ignoring padded tokens.

    ``padding_mask`` is ``[B, T]`` with ``True`` at padding. Rows made only of
    padding pool to zeros.

    Example:
        >>> states = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(states, torch.tensor([[False, False, True]])).tolist()
        [[2.0]]
    """
    if states.ndim != 3:
        raise ValueError(f"masked_mean expects [B, T, D] states, got {tuple(states.shape)}")
    if padding_mask is None:
        return states.mean(dim=1)
    if padding_mask.shape != states.shape[:2]:
        raise ValueError(
            f"padding_mask {tuple(padding_mask.shape)} does not match the [B, T] of states {tuple(states.shape)}"
        )
    keep = (~padding_mask.bool()).to(states.dtype).unsqueeze(-1)  # [B, T, 1]
    return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


def standardize(train_feats: Tensor, *others: Tensor, eps: float = 1e-6) -> tuple[Tensor, ...]:
    """Standardise features with the mean and std of ``train_feats`` over its first axis.

    Returns the standardised train features followed by each of ``others``
    transformed with the same (train) statistics.

    Example:
        >>> train, test = standardize(torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]]))
        >>> train.flatten().tolist(), test.flatten().tolist()
        ([-1.0, 1.0], [3.0])
    """
    mean = train_feats.mean(dim=0, keepdim=True)
    std = train_feats.std(dim=0, unbiased=False, keepdim=True).clamp_min(eps)
    return tuple((feats - mean) / std for feats in (train_feats, *others))


def layer_weighted_sum(layer_feats: Tensor, layer_logits: Tensor) -> Tensor:
    """Combine ``[N, L, D]`` per-layer features with ``softmax(layer_logits)`` weights.

    Example:
        >>> feats = torch.stack([torch.zeros(1, 2), torch.ones(1, 2)], dim=1)  # [1, 2, 2]
        >>> layer_weighted_sum(feats, torch.zeros(2)).tolist()
        [[0.5, 0.5]]
    """
    if layer_feats.ndim != 3 or layer_logits.shape != (layer_feats.shape[1],):
        raise ValueError(
            f"expected [N, L, D] features and [L] logits, "
            f"got {tuple(layer_feats.shape)} and {tuple(layer_logits.shape)}"
        )
    weights = layer_logits.softmax(dim=0)
    return torch.einsum("nld,l->nd", layer_feats, weights)


def infer_num_classes(*labels: Tensor) -> int:
    """Number of classes implied by integer labels: ``max + 1`` over all given tensors.

    Example:
        >>> infer_num_classes(torch.tensor([0, 3]), torch.tensor([1, 5]))
        6
    """
    non_empty = [y for y in labels if y.numel() > 0]
    if not non_empty:
        raise ValueError("cannot infer the number of classes from empty labels")
    smallest = min(int(y.min().item()) for y in non_empty)
    if smallest < 0:
        raise ValueError(f"labels must be non-negative class indices, found {smallest}")
    return max(int(y.max().item()) for y in non_empty) + 1


def label_coverage_problems(train_labels: Any, test_labels: Any = None) -> list[str]:
    """Why a classifier fitted on ``train_labels`` says little about ``test_labels``, in words.

    Lists, in this order: a train split with a single class, fewer train samples than
    classes (over both splits), and test classes without a single train sample (a
    classifier can never predict them). An empty list means none of these. Labels are
    integer class indices (tensors, arrays or lists).

    Example:
        >>> label_coverage_problems([0, 0, 1], [0, 1])
        []
        >>> label_coverage_problems([0, 1], [0, 1, 2])
        ['2 train samples for 3 classes', 'test class 2 has no train sample']
    """
    train = torch.as_tensor(train_labels).reshape(-1).long()
    test = torch.as_tensor(test_labels if test_labels is not None else []).reshape(-1).long()
    train_classes = set(train.unique().tolist())
    classes = train_classes | set(test.unique().tolist())
    problems: list[str] = []
    if len(train_classes) == 1:
        problems.append(f"the train split holds a single class ({next(iter(train_classes))})")
    if train.numel() < len(classes):
        noun = "sample" if train.numel() == 1 else "samples"
        problems.append(f"{train.numel()} train {noun} for {len(classes)} classes")
    unseen = sorted(classes - train_classes)
    if unseen:
        shown = ", ".join(str(c) for c in unseen[:10]) + (", ..." if len(unseen) > 10 else "")
        verb = "has" if len(unseen) == 1 else "have"
        problems.append(f"test class{'es' if len(unseen) > 1 else ''} {shown} {verb} no train sample")
    return problems


def warn_if_few_labels(component: str, train_labels: Any, test_labels: Any = None, *, stacklevel: int = 2) -> bool:
    """Warn, naming ``component``, when :func:`label_coverage_problems` finds any; return whether it did.

    Evaluators call this on small or lopsided splits instead of failing: the metric is still
    computed, and the warning says why it means little.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_if_few_labels("demo.probe", [0], [0, 1])
        True
        >>> str(caught[0].message).split("; ")[:2]
        ['demo.probe: the train split holds a single class (0)', '1 train sample for 2 classes']
    """
    problems = label_coverage_problems(train_labels, test_labels)
    if problems:
        warnings.warn(
            f"{component}: {'; '.join(problems)}; its score means little", UserWarning, stacklevel=stacklevel + 1
        )
    return bool(problems)
