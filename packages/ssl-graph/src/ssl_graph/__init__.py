"""Graph plugin for ssl-core: GraphMAE on torch-geometric GAT / GIN encoders.

Components (entry points, loaded lazily by ssl-core): encoders ``graph.gat``, ``graph.gin``;
views ``graph.node_mask``, ``graph.augment`` (GRACE's two views); objective ``graph.graphmae``;
evaluators ``graph.node_probe``, ``graph.svm``; datasets ``graph.planetoid``, ``graph.tudataset``, ``graph.synthetic``,
``graph.memmap`` (a graph folder of memory-mapped ``.npy`` arrays, neighbour-sampled); recipes ``graph.graphmae``,
``graph.graphmae_memmap``; exporter ``graph.pyg`` (``ssl export RUN --to pyg``: the encoder as
``torch_geometric.nn`` layers); command ``ssl graph-synthetic`` (a hook plugin, ``graph.cli``).

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
    GraphSource,
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
from ._export import PyGExporter, pyg_kwargs
from ._graph_folder import FORMAT as GRAPH_FOLDER_FORMAT
from ._graph_folder import GraphFolder, memmap, open_graph_folder, save_graph_folder
from ._objectives import GraphMAEObjective
from ._recipes import GRAPHMAE_PAPER, PUBLISHED_GRAPHMAE, graphmae, graphmae_memmap
from ._synthetic_folder import write_synthetic_graph
from ._views import GraphAugmentViews, NodeMaskViews

try:
    __version__: str = version("ssl-graph")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "GRAPHMAE_PAPER",
    "GRAPH_FOLDER_FORMAT",
    "PUBLISHED_GRAPHMAE",
    "GATEncoder",
    "GINEncoder",
    "GraphAugmentViews",
    "GraphDataError",
    "GraphFolder",
    "GraphMAEObjective",
    "GraphSVMEvaluator",
    "GraphSource",
    "NeighborSubgraphs",
    "NodeMaskViews",
    "NodeProbeEvaluator",
    "PyGExporter",
    "__version__",
    "collate_graphs",
    "collate_single_graph",
    "functional",
    "graph_batch",
    "graphmae",
    "graphmae_memmap",
    "memmap",
    "node_embeddings",
    "node_probe",
    "open_graph_folder",
    "planetoid",
    "pyg_kwargs",
    "save_graph_folder",
    "synthetic",
    "tudataset",
    "write_synthetic_graph",
]
