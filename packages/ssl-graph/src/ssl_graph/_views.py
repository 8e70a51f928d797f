"""View generators for graphs: GraphMAE's node masks (optional edge dropping); GRACE's two augmented views.

Example:
    >>> import torch
    >>> views = NodeMaskViews(mask_rate=0.5, replace_rate=0.1)
    >>> batch = {"x": torch.randn(10, 3), "edge_index": torch.tensor([[0, 1], [1, 0]])}
    >>> v = views(batch, torch.Generator().manual_seed(0))
    >>> int(v.masks[0].sum()), sorted(v.extras)
    (5, ['node_mask'])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ssl_core import Views

from ._fused import GraphStructure
from .functional import drop_edges, sample_node_mask

__all__ = ["GraphAugmentViews", "NodeMaskViews"]


class NodeMaskViews:
    """Choose the nodes GraphMAE masks (and optionally drop edges); the objective applies them.

    Returns one view: the batch (with dropped edges when ``drop_edge_rate > 0``), its
    boolean node mask in ``masks[0]``, and the full :class:`~ssl_graph.functional.NodeMask`
    under ``extras["node_mask"]``. For neighbour-sampled subgraphs the mask is drawn over
    all sampled nodes.

    Args:
        mask_rate: fraction of nodes masked, in (0, 1).
        replace_rate: fraction of the masked nodes that get another node's features instead
            of the ``[MASK]`` token.
        drop_edge_rate: probability of dropping each edge (self-loops kept).

    Example:
        >>> NodeMaskViews(mask_rate=1.5)
        Traceback (most recent call last):
        ...
        ValueError: mask_rate must be in (0, 1), got 1.5
    """

    modality: ClassVar[str] = "graph"
    num_views: ClassVar[int] = 1

    def __init__(self, mask_rate: float = 0.5, replace_rate: float = 0.05, drop_edge_rate: float = 0.0) -> None:
        if not 0.0 < mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        if not 0.0 <= replace_rate < 1.0:
            raise ValueError(f"replace_rate must be in [0, 1), got {replace_rate}")
        if not 0.0 <= drop_edge_rate < 1.0:
            raise ValueError(f"drop_edge_rate must be in [0, 1), got {drop_edge_rate}")
        self.mask_rate, self.replace_rate, self.drop_edge_rate = mask_rate, replace_rate, drop_edge_rate

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x = batch.get("x")
        if not isinstance(x, torch.Tensor) or "edge_index" not in batch:
            raise ValueError("NodeMaskViews needs a graph batch with 'x' and 'edge_index' (a graph dataset)")
        num_nodes = int(x.shape[0])
        mask = sample_node_mask(num_nodes, self.mask_rate, self.replace_rate, generator, device=x.device)
        view = dict(batch)
        if self.drop_edge_rate > 0:
            view["edge_index"] = drop_edges(batch["edge_index"], self.drop_edge_rate, generator)
            view["structure"] = GraphStructure.from_edge_index(view["edge_index"], num_nodes)
        is_masked = torch.zeros(num_nodes, dtype=torch.bool, device=x.device)
        is_masked[mask.masked] = True
        return Views(batches=[view], masks=[is_masked], extras={"node_mask": mask})


class GraphAugmentViews:
    """Two stochastically augmented copies of the graph: edges dropped and feature columns masked (GRACE).

    View ``i`` drops each edge with probability ``drop_edge_rates[i]`` (self-loops kept) and
    zeroes each feature dimension, for all nodes, with probability ``feature_mask_rates[i]``;
    GRACE's Cora settings (Zhu et al., 2020) are the defaults. A contrastive objective on
    node embeddings (``core.simclr``: NT-Xent with both views' other nodes as negatives,
    GRACE's loss) then trains node-level representations.

    Example:
        >>> import torch
        >>> batch = {"x": torch.ones(4, 6), "edge_index": torch.tensor([[0, 1, 2], [1, 2, 3]])}
        >>> v = GraphAugmentViews()(batch, torch.Generator().manual_seed(0))
        >>> len(v), v.batches[0]["x"].shape
        (2, torch.Size([4, 6]))
    """

    modality: ClassVar[str] = "graph"
    num_views: ClassVar[int] = 2

    def __init__(
        self,
        drop_edge_rates: tuple[float, float] = (0.2, 0.4),
        feature_mask_rates: tuple[float, float] = (0.3, 0.4),
    ) -> None:
        rates = [*drop_edge_rates, *feature_mask_rates]
        if len(drop_edge_rates) != 2 or len(feature_mask_rates) != 2 or not all(0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"need two rates in [0, 1) each, got {drop_edge_rates} and {feature_mask_rates}")
        self.drop_edge_rates = (float(drop_edge_rates[0]), float(drop_edge_rates[1]))
        self.feature_mask_rates = (float(feature_mask_rates[0]), float(feature_mask_rates[1]))

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        x = batch.get("x")
        if not isinstance(x, torch.Tensor) or "edge_index" not in batch:
            raise ValueError("GraphAugmentViews needs a graph batch with 'x' and 'edge_index' (a graph dataset)")
        views = []
        for drop_rate, mask_rate in zip(self.drop_edge_rates, self.feature_mask_rates, strict=True):
            keep = torch.rand(x.shape[1], generator=generator, device=generator.device).to(x.device) >= mask_rate
            view = {**batch, "x": x * keep.to(x.dtype)}
            if drop_rate > 0:
                view["edge_index"] = drop_edges(batch["edge_index"], drop_rate, generator)
                view["structure"] = GraphStructure.from_edge_index(view["edge_index"], int(x.shape[0]))
            views.append(view)
        return Views(batches=views)
