"""Pure tensor kernels behind the evaluators (re-exported from ``ssl_core.functional``).

Each function takes tensors and returns tensors or floats; nothing here runs an
encoder, trains a model or keeps state, so the kernels can be reused and tested
on their own.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BANK_BATCH_SIZE",
    "cosine_top_k",
    "infer_num_classes",
    "inverse_row_norms",
    "knn_predict",
    "knn_vote",
    "label_coverage_problems",
    "layer_weighted_sum",
    "masked_mean",
    "standardize",
    "topk_accuracy",
    "topk_hits",
    "warn_if_few_labels",
]

BANK_BATCH_SIZE: Final = 65_536
"""Train rows per similarity chunk in :func:`knn_predict`: a ``[1024, 65536]`` float32 chunk is 256 MiB."""


def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int,
    batch_size: int = 1024,
    bank_batch_size: int = BANK_BATCH_SIZE,
) -> Tensor:
    """Weighted k-nearest-neighbour class scores (DINO's kNN classifier).

    Features are compared by cosine similarity; each test row votes with its ``k`` most
    similar train rows, each vote weighted by ``exp(similarity / temperature)`` and summed
    per class. ``k`` is clipped to the number of train rows. Test rows are processed
    ``batch_size`` at a time and the train rows (the bank) ``bank_batch_size`` at a time,
    merging a running top-k (:func:`cosine_top_k`), so memory is
    ``O(batch_size x bank_batch_size)`` whatever the sizes of the splits. Similarities are
    computed in float32 even for float16 features.

    Args:
        train_feats: ``[N_train, D]`` train features (any floating dtype).
        train_labels: ``[N_train]`` integer class indices.
        test_feats: ``[N_test, D]`` test features.
        k: number of neighbours (``>= 1``).
        temperature: softmax-style temperature (``> 0``).
        num_classes: number of classes ``C``.
        batch_size: test rows per similarity chunk.
        bank_batch_size: train rows per similarity chunk.

    Returns:
        ``[N_test, C]`` float scores; the arg-max is the prediction.

    Example:
        >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> scores = knn_predict(train, torch.tensor([0, 0, 1]), torch.tensor([[1.0, 0.05]]),
        ...                      k=2, temperature=0.07, num_classes=2)
        >>> scores.argmax(dim=1).tolist()
        [0]
    """
    _check_knn_inputs(train_feats, train_labels, test_feats, k=k, temperature=temperature)
    k = min(k, train_feats.shape[0])
    inverse_norms = inverse_row_norms(train_feats, bank_batch_size)
    labels = train_labels.long().to(train_feats.device)
    chunks = []
    for query in test_feats.split(batch_size):
        similarity, index = cosine_top_k(
            query, train_feats, k=k, bank_batch_size=bank_batch_size, bank_inverse_norms=inverse_norms
        )
        chunks.append(knn_vote(similarity, labels[index], temperature=temperature, num_classes=num_classes))
    if not chunks:
        return torch.zeros(0, num_classes, device=train_feats.device)
    return torch.cat(chunks)


def _check_knn_inputs(
    train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, *, k: int, temperature: float
) -> None:
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


def inverse_row_norms(bank: Tensor, batch_size: int = BANK_BATCH_SIZE) -> Tensor:
    """``1 / max(||row||, 1e-12)`` of each row of ``bank``, in float32, ``batch_size`` rows at a time.

    What :func:`torch.nn.functional.normalize` divides by, without a normalised float32
    copy of the whole bank.

    Example:
        >>> inverse_row_norms(torch.tensor([[3.0, 4.0], [0.0, 8.0]], dtype=torch.float16)).tolist()
        [0.20000000298023224, 0.125]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    norms = [chunk.float().norm(dim=1) for chunk in bank.split(batch_size)]
    joined = torch.cat(norms) if norms else bank.new_zeros(0, dtype=torch.float32)
    return joined.clamp_min(1e-12).reciprocal()


def cosine_top_k(
    queries: Tensor,
    bank: Tensor,
    *,
    k: int,
    bank_batch_size: int = BANK_BATCH_SIZE,
    bank_inverse_norms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` bank rows most cosine-similar to each query: ``(similarity [Q, k] float32, index [Q, k])``.

    The bank is read ``bank_batch_size`` rows at a time (each chunk upcast to float32) and a
    running top-k is merged with each chunk's similarities, so a chunk may hold fewer rows
    than ``k``. Columns are sorted by decreasing similarity. Pass ``bank_inverse_norms``
    (from :func:`inverse_row_norms`) when calling this for many query chunks.

    Example:
        >>> bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> similarity, index = cosine_top_k(torch.tensor([[0.0, 1.0]]), bank, k=2, bank_batch_size=1)
        >>> index.tolist(), [round(s, 4) for s in similarity[0].tolist()]
        ([[1, 2]], [1.0, 0.7071])
    """
    if k < 1 or k > bank.shape[0]:
        raise ValueError(f"k must be between 1 and the {bank.shape[0]} bank rows, got {k}")
    if bank_batch_size < 1:
        raise ValueError(f"bank_batch_size must be >= 1, got {bank_batch_size}")
    if bank_inverse_norms is None:
        bank_inverse_norms = inverse_row_norms(bank, bank_batch_size)
    unit = F.normalize(queries.float(), dim=1)
    best: tuple[Tensor, Tensor] | None = None
    for start in range(0, bank.shape[0], bank_batch_size):
        chunk = bank[start : start + bank_batch_size]
        similarity = (unit @ chunk.float().T).mul_(bank_inverse_norms[start : start + chunk.shape[0]])  # in place
        chunk_similarity, position = similarity.topk(min(k, chunk.shape[0]), dim=1)
        del similarity  # freed before the next chunk's is allocated: one chunk alive at a time
        if best is None:
            best = chunk_similarity, position
            continue
        candidates = torch.cat([best[0], chunk_similarity], dim=1)
        candidate_index = torch.cat([best[1], position + start], dim=1)
        merged, picked = candidates.topk(min(k, candidates.shape[1]), dim=1)
        best = merged, candidate_index.gather(1, picked)
    if best is None:
        raise ValueError("cosine_top_k needs a non-empty bank")
    return best


def knn_vote(similarity: Tensor, neighbour_labels: Tensor, *, temperature: float, num_classes: int) -> Tensor:
    """Class scores ``[Q, C]`` from neighbours: each votes ``exp(similarity / temperature)`` for its label.

    Example:
        >>> scores = knn_vote(torch.tensor([[0.9, 0.1]]), torch.tensor([[1, 0]]), temperature=1.0, num_classes=2)
        >>> scores.argmax(dim=1).tolist()
        [1]
    """
    votes = (similarity / temperature).exp()
    scores = torch.zeros(similarity.shape[0], num_classes, device=similarity.device)
    return scores.scatter_add_(1, neighbour_labels.long(), votes)


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
    return topk_hits(scores, labels, k) / scores.shape[0]  # exact ratio, not a float32 mean


def topk_hits(scores: Tensor, labels: Tensor, k: int = 1) -> int:
    """Number of rows whose true label is among the ``k`` highest scores.

    Example:
        >>> topk_hits(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        1
    """
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} rows but labels has {labels.shape[0]}")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return int((top == labels.to(top.device).long().unsqueeze(1)).any(dim=1).sum().item())


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


def standardize(
    train_feats: Tensor, *others: Tensor, eps: float = 1e-6, batch_size: int = BANK_BATCH_SIZE
) -> tuple[Tensor, ...]:
    """Standardise features with the mean and std of ``train_feats`` over its first axis.

    Returns the standardised train features followed by each of ``others``
    transformed with the same (train) statistics. Features held in a lower precision
    (float16) keep their dtype: the statistics are accumulated in float64 and each
    ``batch_size``-row chunk is transformed in float32, so no float32 copy of a whole
    split is made.

    Example:
        >>> train, test = standardize(torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]]))
        >>> train.flatten().tolist(), test.flatten().tolist()
        ([-1.0, 1.0], [3.0])
    """
    if all(feats.dtype == torch.float32 for feats in (train_feats, *others)):
        mean = train_feats.mean(dim=0, keepdim=True)
        std = train_feats.std(dim=0, unbiased=False, keepdim=True).clamp_min(eps)
        return tuple((feats - mean) / std for feats in (train_feats, *others))
    mean, std = _chunked_mean_std(train_feats, batch_size)
    std = std.clamp_min(eps)
    return tuple(_chunked_affine(feats, mean, std, batch_size) for feats in (train_feats, *others))


def _chunked_mean_std(feats: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    total = feats.new_zeros((1, *feats.shape[1:]), dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in feats.split(batch_size):
        wide = chunk.double()
        total += wide.sum(dim=0, keepdim=True)
        squares += wide.pow(2).sum(dim=0, keepdim=True)
    rows = max(feats.shape[0], 1)
    mean = total / rows
    variance = (squares / rows - mean.pow(2)).clamp_min(0.0)
    return mean.float(), variance.sqrt().float()


def _chunked_affine(feats: Tensor, mean: Tensor, std: Tensor, batch_size: int) -> Tensor:
    out = torch.empty_like(feats)
    for start in range(0, feats.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        out[rows] = ((feats[rows].float() - mean) / std).to(feats.dtype)
    return out


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
