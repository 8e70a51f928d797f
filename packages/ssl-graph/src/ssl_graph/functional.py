"""Pure functions behind the graph components: GraphMAE's masking and loss, graph preparation, sampling.

Everything here is vectorised (no Python loop over nodes or edges) and draws its
randomness from an explicit ``torch.Generator``.

Example:
    >>> import torch
    >>> x = torch.eye(3)
    >>> float(sce_loss(x, x, alpha=3.0))
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IndexableArray",
    "NodeMask",
    "add_self_loops_once",
    "drop_edges",
    "mask_node_features",
    "sample_neighbors",
    "sample_node_mask",
    "sce_loss",
    "to_csr",
]


def sce_loss(prediction: Tensor, target: Tensor, alpha: float = 3.0) -> Tensor:
    """GraphMAE's scaled cosine error: ``mean((1 - cos(prediction, target)) ** alpha)``.

    Computed in float32 whatever the input precision.

    Example:
        >>> import torch
        >>> float(sce_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), alpha=2.0))
        1.0
    """
    p = F.normalize(prediction.float(), p=2, dim=-1)
    t = F.normalize(target.float(), p=2, dim=-1)
    return (1.0 - (p * t).sum(dim=-1)).pow(alpha).mean()


@dataclass
class NodeMask:
    """Which nodes GraphMAE masks, and how.

    Attributes:
        masked: every masked node (the loss is computed on these), ``[M]``.
        token: masked nodes whose features become the ``[MASK]`` token.
        noise: masked nodes whose features are replaced by another node's.
        noise_source: the nodes whose features ``noise`` nodes receive.
    """

    masked: Tensor
    token: Tensor
    noise: Tensor
    noise_source: Tensor


def sample_node_mask(
    num_nodes: int,
    mask_rate: float,
    replace_rate: float,
    generator: torch.Generator,
    device: torch.device | None = None,
) -> NodeMask:
    """Draw GraphMAE's node mask: ``int(mask_rate * N)`` nodes, of which ``int(replace_rate * M)`` get noise.

    As in the paper's code, ``int((1 - replace_rate) * M)`` masked nodes get the token and the
    last ``int(replace_rate * M)`` get a random node's features; rounding can leave a masked
    node with its own features (it still counts in the loss).

    Example:
        >>> import torch
        >>> m = sample_node_mask(100, 0.5, 0.1, torch.Generator().manual_seed(0))
        >>> len(m.masked), len(m.token), len(m.noise)
        (50, 45, 5)
    """
    if not 0.0 < mask_rate < 1.0:
        raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
    if not 0.0 <= replace_rate < 1.0:
        raise ValueError(f"replace_rate must be in [0, 1), got {replace_rate}")
    device = device or torch.device("cpu")
    perm = torch.randperm(num_nodes, generator=generator, device=generator.device).to(device)
    num_masked = max(1, int(mask_rate * num_nodes))
    masked = perm[:num_masked]
    num_noise = int(replace_rate * num_masked)
    if num_noise == 0:
        empty = masked[:0]
        return NodeMask(masked=masked, token=masked, noise=empty, noise_source=empty)
    order = torch.randperm(num_masked, generator=generator, device=generator.device).to(device)
    token = masked[order[: int((1.0 - replace_rate) * num_masked)]]
    noise = masked[order[num_masked - num_noise :]]
    source = torch.randperm(num_nodes, generator=generator, device=generator.device)[:num_noise].to(device)
    return NodeMask(masked=masked, token=token, noise=noise, noise_source=source)


def mask_node_features(x: Tensor, mask: NodeMask, mask_token: Tensor) -> Tensor:
    """Apply a :class:`NodeMask`: noise nodes copy their source's features, token nodes become ``mask_token``.

    Differentiable with respect to ``mask_token`` (shape ``[1, F]``); ``x`` is not modified.

    Example:
        >>> import torch
        >>> m = NodeMask(torch.tensor([0]), torch.tensor([0]), torch.tensor([], dtype=torch.long),
        ...              torch.tensor([], dtype=torch.long))
        >>> mask_node_features(torch.ones(2, 2), m, torch.zeros(1, 2)).tolist()
        [[0.0, 0.0], [1.0, 1.0]]
    """
    out = x
    if mask.noise.numel():
        out = x.index_copy(0, mask.noise, x.index_select(0, mask.noise_source))
    is_token = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    is_token[mask.token] = True
    return torch.where(is_token.unsqueeze(1), mask_token.to(x.dtype), out)


def add_self_loops_once(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Remove existing self-loops, then add exactly one per node (GraphMAE's preprocessing).

    Example:
        >>> import torch
        >>> add_self_loops_once(torch.tensor([[0, 1, 1], [1, 0, 1]]), 2).tolist()
        [[0, 1, 0, 1], [1, 0, 0, 1]]
    """
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device).repeat(2, 1)
    return torch.cat([edge_index[:, keep], loops], dim=1)


def drop_edges(edge_index: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """Drop each non-self-loop edge with probability ``rate``; self-loops are kept.

    Example:
        >>> import torch
        >>> ei = torch.tensor([[0, 1, 0], [1, 0, 0]])
        >>> drop_edges(ei, 0.0, torch.Generator()).shape
        torch.Size([2, 3])
    """
    if rate <= 0.0:
        return edge_index
    if rate >= 1.0:
        raise ValueError(f"drop_edge_rate must be below 1, got {rate}")
    draw = torch.rand(edge_index.shape[1], generator=generator, device=generator.device).to(edge_index.device)
    keep = (draw >= rate) | (edge_index[0] == edge_index[1])
    return edge_index[:, keep]


def to_csr(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Incoming-edge CSR: ``(rowptr [N + 1], sources [E])``, edges grouped by target node.

    Example:
        >>> import torch
        >>> rowptr, src = to_csr(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3)
        >>> rowptr.tolist(), src.tolist()
        ([0, 2, 3, 3], [1, 2, 0])
    """
    target, source = edge_index[1], edge_index[0]
    order = torch.argsort(target * num_nodes + source)
    counts = torch.bincount(target, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    return rowptr, source[order]


class IndexableArray(Protocol):
    """A 1-D integer array :func:`sample_neighbors` can read without it being a tensor in memory.

    Indexing with a tensor of positions returns the values as a tensor of the same shape
    (a memory-mapped CSR array does this while keeping little of the file in memory).
    """

    def __getitem__(self, index: Tensor) -> Tensor: ...

    def numel(self) -> int: ...


def sample_neighbors(
    rowptr: Tensor | IndexableArray,
    sources: Tensor | IndexableArray,
    seeds: Tensor,
    num_neighbors: list[int],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Sample a ``len(num_neighbors)``-hop subgraph around ``seeds`` (GraphSAGE / ``NeighborLoader`` style).

    Each hop takes up to ``k`` incoming neighbours of the current frontier (all of them
    when a node has at most ``k``, otherwise ``k`` drawn with replacement and
    de-duplicated). Returns ``(node_ids, edge_index)``: the subgraph's global node ids
    with the seeds first (then each hop's new nodes in increasing id), and its edges in
    local ids (source -> target).

    Memory and time grow with the sampled subgraph, not with the graph: ``rowptr`` and
    ``sources`` are only indexed (tensors of any integer dtype, or any
    :class:`IndexableArray` such as a memory-mapped file), and global ids become local
    ones by binary search over the nodes met so far (no array of the graph's size is
    allocated).

    Example:
        >>> import torch
        >>> rowptr, src = to_csr(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3)
        >>> ids, ei = sample_neighbors(rowptr, src, torch.tensor([0]), [5], torch.Generator().manual_seed(0))
        >>> ids.tolist(), ei.shape[1]
        ([0, 1, 2], 2)
    """
    num_nodes = rowptr.numel() - 1
    node_ids = seeds.long().clone()
    met, met_local = torch.sort(node_ids)  # global ids met so far (sorted) and their local ids
    frontier = node_ids
    edge_src: list[Tensor] = []
    edge_dst: list[Tensor] = []
    for k in num_neighbors:
        start = rowptr[frontier].long()
        degree = rowptr[frontier + 1].long() - start
        small = degree <= k
        # nodes with few neighbours: take them all
        small_nodes, small_deg = frontier[small], degree[small]
        owner = torch.repeat_interleave(small_nodes, small_deg)
        first = torch.repeat_interleave(start[small] - torch.cumsum(small_deg, 0) + small_deg, small_deg)
        offsets = torch.arange(owner.numel()) + first
        picked_src, picked_dst = [sources[offsets].long()], [owner]
        # nodes with many neighbours: k draws with replacement, duplicates removed below
        big_nodes = frontier[~small]
        if big_nodes.numel():
            draw = torch.rand(big_nodes.numel(), k, generator=generator)
            pos = start[~small].unsqueeze(1) + (draw * degree[~small].unsqueeze(1)).long()
            picked_src.append(sources[pos.reshape(-1)].long())
            picked_dst.append(big_nodes.repeat_interleave(k))
        src, dst = torch.cat(picked_src), torch.cat(picked_dst)
        pair = torch.unique(src * num_nodes + dst)
        src, dst = pair // num_nodes, pair % num_nodes
        where = torch.searchsorted(met, src).clamp(max=met.numel() - 1)
        new = torch.unique(src[met[where] != src])
        node_ids = torch.cat([node_ids, new])
        met, order = torch.sort(torch.cat([met, new]))
        met_local = torch.cat([met_local, torch.arange(node_ids.numel() - new.numel(), node_ids.numel())])[order]
        edge_src.append(met_local[torch.searchsorted(met, src)])
        edge_dst.append(met_local[torch.searchsorted(met, dst)])
        frontier = new
        if frontier.numel() == 0:
            break
    edge_index = (
        torch.stack([torch.cat(edge_src), torch.cat(edge_dst)]) if edge_src else torch.empty(2, 0, dtype=torch.long)
    )
    return node_ids, edge_index
