"""A graph encoder exported by ssl-graph (``ssl export RUN --to pyg``), built from ``torch_geometric.nn`` layers.

This file is the export's ``model.py``: it needs torch and torch_geometric only. Next to it,
``pyg_model.json`` holds the constructor arguments of :class:`PyGEncoder` and
``model.safetensors`` its state dict::

    import sys; sys.path.insert(0, "EXPORT_FOLDER")
    from model import load, with_self_loops
    model = load("EXPORT_FOLDER")                                      # eval mode
    nodes, hidden = model(x, with_self_loops(edge_index, x.shape[0]))  # [N, D], one [N, D] per layer
    graphs = model.readout(nodes, batch)                               # [G, D] for a batch of graphs

The encoder was trained on graphs with exactly one self-loop per node (GraphMAE's
preprocessing) and its ``GATConv`` layers do not add them: pass your ``edge_index``
through :func:`with_self_loops` (it removes existing self-loops and adds one per node).

Example:
    >>> import torch
    >>> model = PyGEncoder("gat", in_dim=3, hidden_dim=8, num_layers=2, heads=2).eval()
    >>> edge_index = with_self_loops(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    >>> nodes, hidden = model(torch.randn(3, 3), edge_index)
    >>> tuple(nodes.shape), len(hidden), tuple(model.readout(nodes, torch.tensor([0, 0, 1])).shape)
    ((3, 8), 2, (2, 8))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GINConv, GraphNorm, global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.utils import add_self_loops, remove_self_loops

__all__ = ["PyGEncoder", "load", "read_safetensors", "with_self_loops"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "prelu": nn.PReLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}
_POOLS = {"mean": global_mean_pool, "max": global_max_pool, "sum": global_add_pool}
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


def _norm(name: str, dim: int) -> nn.Module:
    """``none`` (identity), ``batchnorm``, ``layernorm`` or ``graphnorm``."""
    table: dict[str, Any] = {"none": nn.Identity, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm,
                             "graphnorm": GraphNorm}  # fmt: skip
    if name not in table:
        raise ValueError(f"unknown norm {name!r}; use one of {', '.join(table)}")
    return table[name]() if name == "none" else table[name](dim)  # type: ignore[no-any-return]


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def with_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``edge_index`` without its self-loops, plus exactly one per node (what the encoder was trained on).

    Example:
        >>> with_self_loops(torch.tensor([[0, 1, 1], [1, 0, 1]]), 2).tolist()
        [[0, 1, 0, 1], [1, 0, 0, 1]]
    """
    edge_index, _ = remove_self_loops(edge_index)
    edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    return edge_index


class PyGEncoder(nn.Module):
    """GAT (``GATConv``, heads concatenated) or GIN (``GINConv`` over a two-layer MLP) node encoder.

    Each layer: dropout on its input, the convolution, a residual projection when
    ``residual`` (GAT), the norm, the activation. The last layer is activated too.

    Args:
        arch: ``gat`` or ``gin``.
        in_dim: node feature size.
        hidden_dim: every layer's output size (GAT: ``heads`` heads of ``hidden_dim // heads``).
        num_layers: graph convolutions.
        heads: attention heads per GAT layer.
        dropout: dropout on each layer's input (training only).
        attn_dropout: dropout on GAT attention coefficients (training only).
        negative_slope: GAT's LeakyReLU slope.
        residual: add ``skips[i](h)`` (identity, or a linear map when the width changes) to GAT layer ``i``.
        norm: ``none``, ``batchnorm``, ``layernorm`` or ``graphnorm`` after each layer (and inside GIN's MLP).
        activation: ``prelu`` (one learnable slope per layer), ``relu``, ``elu``, ``gelu`` or ``identity``.
        pooling: the graph readout of :meth:`readout`: ``mean``, ``max`` or ``sum``.
        add_self_loops: let ``GATConv`` add self-loops itself (otherwise use :func:`with_self_loops`).
    """

    def __init__(
        self,
        arch: str,
        in_dim: int,
        hidden_dim: int,
        num_layers: int,
        heads: int = 1,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        negative_slope: float = 0.2,
        residual: bool = False,
        norm: str = "none",
        activation: str = "prelu",
        pooling: str = "mean",
        add_self_loops: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ("gat", "gin"):
            raise ValueError(f"arch must be 'gat' or 'gin', got {arch!r}")
        if pooling not in _POOLS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(_POOLS)}")
        self.arch, self.dropout, self.residual, self.pooling = arch, dropout, residual, pooling
        self.convs = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.norms = nn.ModuleList(_norm(norm, hidden_dim) for _ in range(num_layers))
        self.activations = nn.ModuleList(_activation(activation) for _ in range(num_layers))
        for i in range(num_layers):
            width = in_dim if i == 0 else hidden_dim
            if arch == "gat":
                self.convs.append(
                    GATConv(width, hidden_dim // heads, heads=heads, concat=True, negative_slope=negative_slope,
                            dropout=attn_dropout, add_self_loops=add_self_loops)
                )  # fmt: skip
                wide = residual and width != hidden_dim
                self.skips.append(nn.Linear(width, hidden_dim, bias=False) if wide else nn.Identity())
            else:
                mlp = nn.Sequential(nn.Linear(width, hidden_dim), _norm(norm, hidden_dim), _activation(activation),
                                    nn.Linear(hidden_dim, hidden_dim))  # fmt: skip
                self.convs.append(GINConv(mlp, train_eps=False))
                self.skips.append(nn.Identity())

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Node embeddings ``[N, D]`` and every layer's node states (the last one is the embeddings).

        ``batch`` (the graph index of each node) matters only to ``graphnorm``.
        """
        h, hidden = x, []
        for conv, skip, norm, act in zip(self.convs, self.skips, self.norms, self.activations, strict=True):
            out = conv(F.dropout(h, self.dropout, self.training), edge_index)
            if self.residual and self.arch == "gat":
                out = out + skip(h)
            h = act(norm(out, batch) if isinstance(norm, GraphNorm) else norm(out))
            hidden.append(h)
        return h, hidden

    def readout(self, nodes: Tensor, batch: Tensor, num_graphs: int | None = None) -> Tensor:
        """One vector per graph (the encoder's ``pooling`` of its nodes) for a batch of graphs."""
        return _POOLS[self.pooling](nodes, batch, num_graphs)  # type: ignore[no-any-return]


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """A ``.safetensors`` file as a state dict, with torch alone (``safetensors.torch.load_file`` gives the same)."""
    data = Path(path).read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + size :]
    state = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        state[name] = flat.reshape(info["shape"])
    return state


def load(folder: str | Path | None = None) -> PyGEncoder:
    """The exported encoder: ``PyGEncoder(**pyg_model.json)`` with ``model.safetensors`` loaded, in eval mode.

    ``folder`` defaults to this file's folder (the export).
    """
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    model = PyGEncoder(**json.loads((folder / "pyg_model.json").read_text()))
    model.load_state_dict(read_safetensors(folder / "model.safetensors"))
    return model.eval()


if __name__ == "__main__":
    encoder = load()
    print(encoder.arch, sum(p.numel() for p in encoder.parameters()), "parameters")
