"""Graph plugin for ssl-core: GraphMAE on torch-geometric GAT / GIN encoders.

Components (entry points, loaded lazily by ssl-core): encoders ``graph.gat``, ``graph.gin``;
views ``graph.node_mask``, ``graph.augment`` (GRACE's two views); objective ``graph.graphmae``;
evaluators ``graph.node_probe``, ``graph.svm``; datasets ``graph.planetoid``, ``graph.tudataset``, ``graph.synthetic``;
recipe ``graph.graphmae``.

Example:
    >>> import ssl_graph
    >>> "GraphMAEObjective" in ssl_graph.__all__
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import functional
from ._data import (
    GraphDataError,
    NeighborSubgraphs,
    collate_graphs,
    collate_single_graph,
    graph_batch,
    planetoid,
    synthetic,
    tudataset,
)
from ._encoders import GATEncoder, GINEncoder, node_embeddings
from ._evaluators import GraphSVMEvaluator, NodeProbeEvaluator, node_probe
from ._objectives import GraphMAEObjective
from ._recipes import GRAPHMAE_PAPER, PUBLISHED_GRAPHMAE, graphmae
from ._views import GraphAugmentViews, NodeMaskViews

try:
    __version__: str = version("ssl-graph")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "GRAPHMAE_PAPER",
    "PUBLISHED_GRAPHMAE",
    "GATEncoder",
    "GINEncoder",
    "GraphAugmentViews",
    "GraphDataError",
    "GraphMAEObjective",
    "GraphSVMEvaluator",
    "NeighborSubgraphs",
    "NodeMaskViews",
    "NodeProbeEvaluator",
    "__version__",
    "collate_graphs",
    "collate_single_graph",
    "functional",
    "graph_batch",
    "graphmae",
    "node_embeddings",
    "node_probe",
    "planetoid",
    "synthetic",
    "tudataset",
]
