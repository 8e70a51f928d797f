"""Graph encoders from ``torch_geometric.nn`` layers: GAT (GraphMAE's node encoder) and GIN.

The sample is the node for node-level data (one graph, no ``batch`` vector) and the
graph for graph-level batches (a ``batch`` vector). :class:`ssl_core.Features` follow the
core contract for both:

- node-level: ``pooled`` = node embeddings ``[N, D]``, ``tokens`` ``[N, 1, D]``, ``layers``
  each ``[N, D]``;
- graph-level: ``pooled`` = readout ``[G, D]``, ``tokens`` = nodes padded per graph
  ``[G, T_max, D]`` with ``padding_mask``, ``layers`` = each layer's readout ``[G, D]``.

:func:`node_embeddings` recovers the node-major ``[N, D]`` matrix from either.

Example:
    >>> import torch
    >>> enc = GATEncoder(in_dim=8, hidden_dim=16, heads=4)
    >>> out = enc({"x": torch.randn(5, 8), "edge_index": torch.tensor([[0, 1], [1, 0]])})
    >>> out.tokens.shape, out.pooled.shape
    (torch.Size([5, 1, 16]), torch.Size([5, 16]))
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from ssl_core import Features

from ._fused import GraphStructure, fast_dropout, gat_forward

__all__ = [
    "GATEncoder",
    "GINEncoder",
    "graph_structure",
    "graphmae_init_",
    "make_activation",
    "make_norm",
    "node_embeddings",
]

Norm = Literal["none", "batchnorm", "layernorm", "graphnorm"]
Pooling = Literal["mean", "max", "sum"]


def make_activation(name: str) -> nn.Module:
    """``prelu`` (one learnable slope, GraphMAE's default), ``relu``, ``elu``, ``gelu`` or ``identity``.

    Example:
        >>> type(make_activation("prelu")).__name__
        'PReLU'
    """
    table: dict[str, type[nn.Module]] = {
        "prelu": nn.PReLU,
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "identity": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(table)}")
    return table[name]()


def make_norm(name: str | None, dim: int) -> nn.Module | None:
    """A node-feature normalisation layer, or ``None`` for ``"none"``.

    Example:
        >>> type(make_norm("layernorm", 4)).__name__
        'LayerNorm'
    """
    if name in (None, "none"):
        return None
    if name == "batchnorm":
        return nn.BatchNorm1d(dim)
    if name == "layernorm":
        return nn.LayerNorm(dim)
    if name == "graphnorm":
        from torch_geometric.nn import GraphNorm

        norm: nn.Module = GraphNorm(dim)
        return norm
    raise ValueError(f"unknown norm {name!r}; use none, batchnorm, layernorm or graphnorm")


def _features(nodes: Tensor, layers: list[Tensor], batch: dict[str, Any], pooling: str) -> Features:
    index = batch.get("batch")
    if index is None:  # node-level: each node is a sample with one token
        return Features(pooled=nodes, tokens=nodes.unsqueeze(1), layers=tuple(layers))
    from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool
    from torch_geometric.utils import to_dense_batch

    size = int(batch.get("num_graphs") or int(index.max()) + 1)
    pool = {"mean": global_mean_pool, "max": global_max_pool, "sum": global_add_pool}[pooling]
    tokens, present = to_dense_batch(nodes, index, batch_size=size)
    return Features(
        pooled=pool(nodes, index, size),
        tokens=tokens,
        padding_mask=~present,
        layers=tuple(pool(h, index, size) for h in layers),
    )


def node_embeddings(features: Features, batch: dict[str, Any]) -> Tensor:
    """Node-major embeddings ``[N, D]`` from a graph encoder's :class:`Features`.

    Example:
        >>> import torch
        >>> node_embeddings(Features(pooled=torch.ones(3, 2), tokens=torch.ones(3, 1, 2)), {}).shape
        torch.Size([3, 2])
    """
    tokens = features.tokens
    if tokens is None:
        raise ValueError("the encoder returned no tokens; a node-level objective needs per-node features")
    if "batch" in batch and features.padding_mask is not None:
        return tokens[~features.padding_mask]
    if tokens.dim() == 3 and tokens.shape[1] == 1:
        return tokens[:, 0]
    raise ValueError(
        f"cannot read node embeddings from tokens of shape {tuple(tokens.shape)}: expected [N, 1, D] for one graph "
        "or [G, T, D] with a padding_mask for a batch of graphs"
    )


def graph_structure(batch: dict[str, Any]) -> GraphStructure:
    """The batch's precomputed :class:`GraphStructure`, or one built from its ``edge_index``.

    Example:
        >>> import torch
        >>> graph_structure({"x": torch.ones(2, 1), "edge_index": torch.tensor([[0], [1]])}).num_edges
        1
    """
    structure = batch.get("structure")
    if isinstance(structure, GraphStructure) and structure.num_nodes == batch["x"].shape[0]:
        return structure
    return GraphStructure.from_edge_index(batch["edge_index"], int(batch["x"].shape[0]))


def graphmae_init_(conv: nn.Module) -> None:
    """GraphMAE's (and DGL's) GAT initialisation: Xavier-normal with gain sqrt(2) for the linear map
    and both attention vectors, zero bias. PyG's ``GATConv`` default is Glorot-uniform (gain 1).

    Example:
        >>> from torch_geometric.nn import GATConv
        >>> conv = GATConv(8, 4, heads=2)
        >>> graphmae_init_(conv)
        >>> float(conv.bias.detach().abs().sum())
        0.0
    """
    gain = nn.init.calculate_gain("relu")
    nn.init.xavier_normal_(conv.lin.weight, gain=gain)  # type: ignore[union-attr,arg-type]
    nn.init.xavier_normal_(conv.att_src, gain=gain)  # type: ignore[arg-type]
    nn.init.xavier_normal_(conv.att_dst, gain=gain)  # type: ignore[arg-type]
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)  # type: ignore[arg-type]


def _check_batch(batch: dict[str, Any], in_dim: int, who: str) -> tuple[Tensor, Tensor]:
    x, edge_index = batch.get("x"), batch.get("edge_index")
    if not isinstance(x, Tensor) or not isinstance(edge_index, Tensor):
        raise ValueError(f"{who} needs a graph batch with 'x' [N, F] and 'edge_index' [2, E] tensors")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{who} was built for {in_dim} node features but got x of shape {tuple(x.shape)}")
    return x, edge_index


class _GraphEncoder(nn.Module):
    modality: ClassVar[str] = "graph"
    supports_token_mask: ClassVar[bool] = False
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = True

    embed_dim: int
    pooling: str


class GATEncoder(_GraphEncoder):
    """GraphMAE's GAT: multi-head ``GATConv`` layers (heads concatenated), input dropout, PReLU.

    Args:
        in_dim: node feature size (filled from the dataset).
        hidden_dim: output size of every layer (``heads`` heads of ``hidden_dim // heads``).
        num_layers: GAT layers; the last one is activated too (GraphMAE's ``encoding=True``).
        heads: attention heads per layer.
        dropout: dropout on each layer's input features (GraphMAE's ``in_drop``).
        attn_dropout: dropout on attention coefficients.
        residual: add a (projected) skip connection to each layer.
        norm: ``none``, ``batchnorm``, ``layernorm`` or ``graphnorm`` after each layer.
        pooling: graph-level readout (``mean``, ``max``, ``sum``) for batches of graphs.
        add_self_loops: let ``GATConv`` add self-loops on every call; the datasets already
            add them once, so this is off.
        init: ``graphmae`` (Xavier-normal, gain sqrt(2), as GraphMAE and DGL) or ``pyg``
            (``GATConv``'s Glorot-uniform default).
        fused: aggregate with sparse CSR matmuls (:mod:`ssl_graph._fused`, same result as
            ``GATConv``, several times faster on CPU); ``False`` uses ``GATConv.propagate``.

    Example:
        >>> GATEncoder(in_dim=1433).embed_dim
        512
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        num_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.2,
        attn_dropout: float = 0.1,
        negative_slope: float = 0.2,
        residual: bool = False,
        norm: Norm = "none",
        activation: str = "prelu",
        pooling: Pooling = "mean",
        add_self_loops: bool = False,
        init: Literal["graphmae", "pyg"] = "graphmae",
        fused: bool = True,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        if hidden_dim % heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by heads ({heads})")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if fused and add_self_loops:
            raise ValueError(
                "fused=True expects self-loops already in the graph (the datasets add them); "
                "set add_self_loops=False or fused=False"
            )
        self.in_dim, self.embed_dim, self.pooling, self.dropout = in_dim, hidden_dim, pooling, dropout
        self.fused = fused
        self.convs = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(num_layers))
        for i in range(num_layers):
            width = in_dim if i == 0 else hidden_dim
            self.convs.append(
                GATConv(
                    width,
                    hidden_dim // heads,
                    heads=heads,
                    concat=True,
                    negative_slope=negative_slope,
                    dropout=attn_dropout,
                    add_self_loops=add_self_loops,
                )
            )
            if init == "graphmae":
                graphmae_init_(self.convs[-1])
            elif init != "pyg":
                raise ValueError(f"init must be 'graphmae' or 'pyg', got {init!r}")
            skip: nn.Module = nn.Identity() if width == hidden_dim else nn.Linear(width, hidden_dim, bias=False)
            if isinstance(skip, nn.Linear) and init == "graphmae":
                nn.init.xavier_normal_(skip.weight, gain=nn.init.calculate_gain("relu"))
            self.skips.append(skip if residual else nn.Identity())
            self.norms.append(make_norm(norm, hidden_dim) or nn.Identity())
        self.residual = residual

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None) -> Features:
        if token_mask is not None:
            raise ValueError("GATEncoder does not take a token_mask; GraphMAE masks node features in the objective")
        h, edge_index = _check_batch(batch, self.in_dim, "GATEncoder")
        structure = graph_structure(batch) if self.fused else None
        layers: list[Tensor] = []
        for conv, skip, norm, act in zip(self.convs, self.skips, self.norms, self.activations, strict=True):
            dropped = fast_dropout(h, self.dropout, self.training)
            if structure is not None:
                out = gat_forward(conv, dropped, structure, training=self.training)
            else:
                out = conv(dropped, edge_index)
            if self.residual:
                out = out + skip(h)
            h = act(_apply_norm(norm, out, batch))
            layers.append(h)
        return _features(h, layers, batch, self.pooling)


def _apply_norm(norm: nn.Module, h: Tensor, batch: dict[str, Any]) -> Tensor:
    if type(norm).__name__ == "GraphNorm":
        return norm(h, batch.get("batch"))  # type: ignore[no-any-return]
    return norm(h)  # type: ignore[no-any-return]


class GINEncoder(_GraphEncoder):
    """GIN (``GINConv`` with a two-layer MLP per layer), GraphMAE's graph-level encoder.

    Example:
        >>> import torch
        >>> enc = GINEncoder(in_dim=3, hidden_dim=8, pooling="sum")
        >>> batch = {"x": torch.ones(4, 3), "edge_index": torch.tensor([[0, 2], [1, 3]]),
        ...          "batch": torch.tensor([0, 0, 1, 1]), "num_graphs": 2}
        >>> enc(batch).pooled.shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        num_layers: int = 2,
        dropout: float = 0.2,
        norm: Norm = "batchnorm",
        activation: str = "prelu",
        pooling: Pooling = "mean",
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GINConv

        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.in_dim, self.embed_dim, self.pooling, self.dropout = in_dim, hidden_dim, pooling, dropout
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(num_layers))
        for i in range(num_layers):
            width = in_dim if i == 0 else hidden_dim
            mlp = nn.Sequential(
                nn.Linear(width, hidden_dim),
                make_norm(norm, hidden_dim) or nn.Identity(),
                make_activation(activation),
                nn.Linear(hidden_dim, hidden_dim),
            )
            self.convs.append(GINConv(mlp, train_eps=False))
            self.norms.append(make_norm(norm, hidden_dim) or nn.Identity())

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None) -> Features:
        if token_mask is not None:
            raise ValueError("GINEncoder does not take a token_mask; GraphMAE masks node features in the objective")
        h, edge_index = _check_batch(batch, self.in_dim, "GINEncoder")
        layers: list[Tensor] = []
        for conv, norm, act in zip(self.convs, self.norms, self.activations, strict=True):
            h = conv(fast_dropout(h, self.dropout, self.training), edge_index)
            h = act(_apply_norm(norm, h, batch))
            layers.append(h)
        return _features(h, layers, batch, self.pooling)
