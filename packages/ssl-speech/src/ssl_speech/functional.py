"""Pure functions behind the speech objectives: span masks, negatives, Gumbel quantisation, losses.

Everything is vectorised over the batch (no Python loop over utterances or frames) and
draws randomness from an explicit ``torch.Generator``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = span_mask(torch.zeros(2, 50, dtype=torch.bool), 0.65, 10, generator=g)
    >>> mask.shape, bool(mask.any(dim=1).all())
    (torch.Size([2, 50]), True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "diversity_loss",
    "gumbel_softmax_hard",
    "infonce_logits",
    "sample_negatives",
    "span_mask",
]


def span_mask(
    padding_mask: Tensor,
    mask_prob: float,
    mask_length: int,
    *,
    generator: torch.Generator,
    min_masks: int = 2,
) -> Tensor:
    """wav2vec 2.0 / HuBERT span masking: ``int(mask_prob * F / mask_length + u)`` span starts per utterance.

    ``F`` is the utterance's number of real frames (``~padding_mask``), ``u ~ U(0, 1)``
    rounds stochastically (as fairseq), at least ``min_masks`` spans; starts are drawn
    without replacement from ``0 .. F - mask_length`` and spans may overlap, so about
    ``mask_prob`` of the frames end up masked when spans are short relative to ``F``
    (0.49 for p = 0.65, length 10). Padding is never masked.

    Returns:
        ``[B, F_max]`` bool, ``True`` = masked.
    """
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be at least 1, got {mask_length}")
    device = padding_mask.device
    batch, frames = padding_mask.shape
    real = (~padding_mask).sum(dim=1)  # [B]
    draw = torch.rand(batch, frames + 1, generator=generator, device=generator.device).to(device)
    keys, rounding = draw[:, :frames], draw[:, frames]
    starts_possible = (real - mask_length + 1).clamp(min=1)  # short utterances: a span from frame 0
    wanted = torch.floor(mask_prob * real / mask_length + rounding).long().clamp(min=min_masks)
    wanted = torch.minimum(wanted, starts_possible)
    positions = torch.arange(frames, device=device).unsqueeze(0)
    keys = keys.masked_fill(positions >= starts_possible.unsqueeze(1), float("inf"))
    rank = keys.argsort(dim=1).argsort(dim=1)  # rank of each position's key within its row
    starts = (rank < wanted.unsqueeze(1)).to(torch.int32)
    covered = starts.cumsum(dim=1)
    shifted = F.pad(covered, (mask_length, 0))[:, :frames]  # starts up to mask_length frames back
    mask = (covered - shifted) > 0
    return mask & ~padding_mask


def sample_negatives(utterance: Tensor, num_negatives: int, *, generator: torch.Generator) -> Tensor:
    """For every masked frame, ``num_negatives`` other masked frames of the same utterance.

    ``utterance`` gives the utterance index of each masked frame, sorted (as
    ``mask.nonzero()`` yields them). Negatives are drawn uniformly with replacement from
    the same utterance's other masked frames, never the frame itself (fairseq's
    ``sample_negatives`` with ``cross_sample_negatives = 0``).

    Returns:
        ``[N, num_negatives]`` indices into the masked frames.

    Example:
        >>> import torch
        >>> utt = torch.tensor([0, 0, 0, 1, 1])
        >>> neg = sample_negatives(utt, 4, generator=torch.Generator().manual_seed(0))
        >>> bool((neg[:3] < 3).all() and (neg[3:] >= 3).all()), bool((neg != torch.arange(5)[:, None]).all())
        (True, True)
    """
    n = utterance.numel()
    device = utterance.device
    counts = torch.bincount(utterance)
    offsets = torch.cumsum(counts, 0) - counts
    own_count = counts[utterance]  # [N]
    if bool((own_count < 2).any()):
        raise ValueError("every utterance needs at least two masked frames to draw negatives from")
    local = torch.arange(n, device=device) - offsets[utterance]
    draw = torch.rand(n, num_negatives, generator=generator, device=generator.device).to(device)
    pick = (draw * (own_count - 1).unsqueeze(1)).long()  # in [0, count - 2]
    pick = pick + (pick >= local.unsqueeze(1)).long()  # skip the frame itself
    return pick + offsets[utterance].unsqueeze(1)


def gumbel_softmax_hard(logits: Tensor, tau: float, *, generator: torch.Generator) -> Tensor:
    """Straight-through Gumbel-softmax over the last dim: one-hot forward, soft gradient.

    Like ``F.gumbel_softmax(hard=True)`` but seeded from ``generator``.

    Example:
        >>> import torch
        >>> y = gumbel_softmax_hard(torch.zeros(3, 5), 1.0, generator=torch.Generator().manual_seed(0))
        >>> y.sum(dim=-1).tolist()
        [1.0, 1.0, 1.0]
    """
    uniform = torch.rand(logits.shape, generator=generator, device=generator.device).to(logits.device)
    gumbels = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    soft = F.softmax((logits.float() + gumbels) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def diversity_loss(logits: Tensor) -> tuple[Tensor, Tensor]:
    """wav2vec 2.0's codebook diversity: ``(G V - perplexity) / (G V)`` of the batch-averaged softmax.

    ``logits``: ``[N, G, V]``. Returns ``(loss, perplexity)``.

    Example:
        >>> import torch
        >>> loss, ppl = diversity_loss(torch.zeros(4, 2, 8))
        >>> round(float(loss), 4), round(float(ppl), 3)
        (0.0, 16.0)
    """
    groups, entries = logits.shape[1], logits.shape[2]
    avg = F.softmax(logits.float(), dim=-1).mean(dim=0)  # [G, V]
    perplexity = torch.exp(-(avg * torch.log(avg + 1e-7)).sum(dim=-1)).sum()
    total = groups * entries
    return (total - perplexity) / total, perplexity


def infonce_logits(context: Tensor, positives: Tensor, negatives: Tensor, temperature: float = 0.1) -> Tensor:
    """Cosine logits ``[N, 1 + K]`` of each context vector against its positive and ``K`` negatives.

    Negatives identical to the positive are set to ``-inf`` (fairseq does this for
    duplicated quantised targets). The positive is class 0.

    Example:
        >>> import torch
        >>> c, pos = torch.eye(2), torch.eye(2)
        >>> neg = torch.stack([torch.eye(2).flip(0)], dim=1)
        >>> infonce_logits(c, pos, neg, 1.0).tolist()
        [[1.0, 0.0], [1.0, 0.0]]
    """
    targets = torch.cat([positives.unsqueeze(1), negatives], dim=1).float()  # [N, 1 + K, D]
    logits = F.cosine_similarity(context.float().unsqueeze(1), targets, dim=-1) / temperature
    duplicate = (negatives.float() == positives.float().unsqueeze(1)).all(dim=-1)
    if bool(duplicate.any()):
        logits[:, 1:] = logits[:, 1:].masked_fill(duplicate, float("-inf"))
    return logits
