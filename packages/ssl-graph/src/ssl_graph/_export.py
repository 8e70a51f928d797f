"""The ``pyg`` export format of ``graph.gat`` and ``graph.gin`` encoders: the module as ``torch_geometric.nn`` layers.

Our encoders are a ``torch.nn.ModuleList`` of ``GATConv`` / ``GINConv`` layers with norms
and activations. The export writes that module as a plain PyG module that needs neither
ssl-core nor ssl-graph:

* ``model.py``: :class:`PyGEncoder` (the layers under the same names as ours, so the state
  dict is ours unchanged), ``load(folder)``, ``with_self_loops(edge_index, num_nodes)``
  and a torch-only safetensors reader;
* ``pyg_model.json``: the constructor arguments of ``PyGEncoder``, read from the built
  modules (:func:`pyg_kwargs`);
* ``model.safetensors``: the state dict.

PyG's ready-made ``torch_geometric.nn.models.GAT`` / ``GIN`` are not used: they leave the
last layer unactivated, share one activation module across layers and drop out after the
activation, where ours drop out each layer's input and give each layer its own PReLU.

Outputs: ``model(x, edge_index, batch)`` returns the node embeddings and every layer's node
states. For one graph (node-level data) ``pooled`` is the node embeddings and ``layer_k``
the ``k``-th node states; for a batch of graphs both are ``model.readout(...)`` of them.

Example:
    >>> from ssl_graph import GATEncoder
    >>> kwargs = pyg_kwargs(GATEncoder(in_dim=8, hidden_dim=16, heads=4))
    >>> kwargs["arch"], kwargs["heads"], kwargs["activation"], kwargs["add_self_loops"]
    ('gat', 4, 'prelu', False)
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ssl_core import ExportError, ExportResult, ExportSource, feature_tensors, max_abs_diff

from ._encoders import GATEncoder, GINEncoder, node_embeddings

__all__ = ["PyGExporter", "pyg_kwargs"]

MODEL_FILE = Path(__file__).with_name("_pyg_model.py")
"""The source written as the export's ``model.py``."""

_ENCODERS = {"graph.gat": GATEncoder, "graph.gin": GINEncoder}

_ACTIVATION_NAMES = {"PReLU": "prelu", "ReLU": "relu", "ELU": "elu", "GELU": "gelu", "Identity": "identity"}
_NORM_NAMES = {"Identity": "none", "BatchNorm1d": "batchnorm", "LayerNorm": "layernorm", "GraphNorm": "graphnorm"}


def _name(module: nn.Module, table: dict[str, str], what: str) -> str:
    kind = type(module).__name__
    if kind not in table:
        raise ExportError(f"the pyg export has no {what} {kind}; it knows {', '.join(table)}")
    return table[kind]


def pyg_kwargs(encoder: GATEncoder | GINEncoder) -> dict[str, Any]:
    """The constructor arguments of the export's ``PyGEncoder`` that rebuild ``encoder`` (``pyg_model.json``).

    Read from the built modules, so every default and override is carried over.

    Example:
        >>> from ssl_graph import GINEncoder
        >>> kwargs = pyg_kwargs(GINEncoder(in_dim=3, hidden_dim=8, norm="graphnorm", pooling="sum"))
        >>> kwargs["arch"], kwargs["norm"], kwargs["pooling"], kwargs["num_layers"]
        ('gin', 'graphnorm', 'sum', 2)
    """
    common: dict[str, Any] = {
        "in_dim": int(encoder.in_dim),
        "hidden_dim": int(encoder.embed_dim),
        "num_layers": len(encoder.convs),
        "dropout": float(encoder.dropout),
        "norm": _name(encoder.norms[0], _NORM_NAMES, "norm"),
        "activation": _name(encoder.activations[0], _ACTIVATION_NAMES, "activation"),
        "pooling": str(encoder.pooling),
    }
    if isinstance(encoder, GINEncoder):
        return {"arch": "gin", **common}
    conv: Any = encoder.convs[0]
    return {
        "arch": "gat",
        **common,
        "heads": int(conv.heads),
        "attn_dropout": float(conv.dropout),
        "negative_slope": float(conv.negative_slope),
        "residual": bool(encoder.residual),
        "add_self_loops": bool(conv.add_self_loops),
    }


def _import_model(folder: Path) -> ModuleType:
    """``folder/model.py`` imported as a user would, under a private name (not left in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(f"_pyg_export_{uuid.uuid4().hex}", folder / "model.py")
    if spec is None or spec.loader is None:
        raise ExportError(f"cannot import {folder / 'model.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _theirs(module: ModuleType, folder: Path, batch: dict[str, Any]) -> dict[str, Tensor]:
    """The rebuilt model's outputs on ``batch`` under :func:`ssl_core.feature_tensors`'s names (and ``nodes``)."""
    model = module.load(folder)
    x: Tensor = batch["x"]
    edge_index: Tensor = module.with_self_loops(batch["edge_index"], x.shape[0])
    graph_of: Tensor | None = batch.get("batch")
    with torch.no_grad():
        nodes, hidden = model(x, edge_index, graph_of)
    if graph_of is None:
        named = {"pooled": nodes}
        named.update({f"layer_{k}": h for k, h in enumerate(hidden, start=1)})
        return named
    size = int(batch.get("num_graphs") or int(graph_of.max()) + 1)
    named = {"pooled": model.readout(nodes, graph_of, size), "nodes": nodes}
    named.update({f"layer_{k}": model.readout(h, graph_of, size) for k, h in enumerate(hidden, start=1)})
    return named


def _ours(source: ExportSource, batch: dict[str, Any]) -> dict[str, Tensor]:
    features = source.features(batch)
    named = feature_tensors(features)
    if "batch" in batch:
        named["nodes"] = node_embeddings(features, batch)
    return named


class PyGExporter:
    """``pyg``: ``model.py`` + ``pyg_model.json`` + ``model.safetensors``, a plain ``torch_geometric.nn`` module.

    The check imports the written ``model.py``, rebuilds the module from the folder, runs it
    on the example batch (edges through its ``with_self_loops``) and compares pooled
    features, per-layer states and, for batches of graphs, node embeddings with our
    encoder. A GAT encoder aggregates with sparse CSR matmuls by default (``fused``), PyG's
    ``GATConv`` by gather/scatter: the difference to the ``GATConv.propagate`` path is
    reported too (``details["max_abs_diff_propagate_path"]``).

    Example:
        >>> result = PyGExporter().export(source, Path("gat-pyg"))  # doctest: +SKIP
        >>> result.files  # doctest: +SKIP
        ['model.py', 'model.safetensors', 'pyg_model.json']
    """

    format: ClassVar[str] = "pyg"

    def supports(self, source: ExportSource) -> str | None:
        wanted = _ENCODERS.get(source.encoder_name)
        if wanted is None or not isinstance(source.encoder, wanted):
            return f"pyg takes graph.gat and graph.gin encoders; this run's is {source.encoder_name}"
        return None

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        import torch_geometric
        from safetensors.torch import save_file

        encoder: GATEncoder | GINEncoder = source.encoder  # type: ignore[assignment]
        kwargs = pyg_kwargs(encoder)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous().clone() if v.is_floating_point() else v.detach().clone()
                 for k, v in encoder.state_dict().items()}  # fmt: skip
        metadata = {"format": "pt", "encoder": source.encoder_name, "torch_geometric": torch_geometric.__version__}
        save_file(state, str(out / "model.safetensors"), metadata=metadata)
        (out / "pyg_model.json").write_text(json.dumps(kwargs, indent=1) + "\n")
        (out / "model.py").write_text(MODEL_FILE.read_text())

        batch = source.example_batch()
        theirs = _theirs(_import_model(out), out, batch)
        worst = max_abs_diff(_ours(source, batch), theirs)
        details: dict[str, Any] = {"arch": kwargs["arch"], "outputs": sorted(theirs)}
        if isinstance(encoder, GATEncoder) and encoder.fused:
            encoder.fused = False
            try:
                details["max_abs_diff_propagate_path"] = max_abs_diff(_ours(source, batch), theirs)
            finally:
                encoder.fused = True
            details["gat_path"] = "fused"
        return ExportResult(
            format=self.format,
            path=str(out),
            files=["model.py", "model.safetensors", "pyg_model.json"],
            max_abs_diff=worst,
            load=(
                f"import sys; sys.path.insert(0, {str(out)!r})\n"
                "from model import load, with_self_loops\n"
                "model = load()\n"
                "nodes, hidden = model(x, with_self_loops(edge_index, x.shape[0]))\n"
                "graphs = model.readout(nodes, batch)  # for a batch of graphs"
            ),
            details=details,
        )
