"""Graph datasets: Planetoid (Cora, CiteSeer, PubMed), TUDataset by name, and a synthetic graph.

A graph batch is a plain dict of tensors::

    {"x": [N, F], "edge_index": [2, E], "y": [N] or [G],
     # node-level graphs:
     "train_mask", "val_mask", "test_mask": [N] bool,
     # graph-level batches:
     "batch": [N] graph index per node, "num_graphs": int,
     # neighbour-sampled subgraphs:
     "num_seed_nodes": int (the seed nodes come first)}

Self-loops are removed and one per node is added once, when the dataset is loaded
(GraphMAE's preprocessing), so encoders never redo it per step.

Example:
    >>> splits = synthetic(num_nodes=200, in_dim=8)
    >>> batch = splits.collate([splits.train[0]])
    >>> batch["x"].shape, splits.info["task"]
    (torch.Size([200, 8]), 'node')
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import ConfigError, DatasetSplits, sample_generator

from ._fused import GraphStructure
from .functional import IndexableArray, add_self_loops_once, sample_neighbors, to_csr

__all__ = [
    "GraphSource",
    "NeighborSubgraphs",
    "collate_graphs",
    "collate_single_graph",
    "graph_batch",
    "planetoid",
    "synthetic",
    "tudataset",
]

PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
_RAW_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


class GraphDataError(ConfigError):
    """A graph dataset is missing (and could not be downloaded), malformed or cannot be used as asked.

    A :class:`~ssl_core.ConfigError` (so also a ``ValueError``): ``ssl run`` prints its
    one-line message, which says what was tried and which ``--root`` layout works.
    """


def _why(exc: BaseException) -> str:
    """``Type: first line of the message``: enough to tell a network error from a bad archive, on one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def graph_batch(data: Any, *, name: str = "graph") -> dict[str, Any]:
    """Check a PyG ``Data`` object and turn it into a node-level batch dict (self-loops added once).

    Raises:
        GraphDataError: no node features, edges pointing outside the graph, or NaN/inf features.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> b = graph_batch(Data(x=torch.ones(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]])))
        >>> b["edge_index"].shape[1]
        5
    """
    x = getattr(data, "x", None)
    if x is None:
        raise GraphDataError(
            f"{name} has no node features (data.x is None); give it features, or load it with "
            "features='degree' to use one-hot node degrees as GraphMAE does"
        )
    x = x.float()
    num_nodes = x.shape[0]
    if num_nodes == 0:
        raise GraphDataError(f"{name} has no nodes")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
        raise GraphDataError(f"{name} has NaN or infinite features (first at node {bad})")
    edge_index = data.edge_index
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise GraphDataError(
            f"{name}: edge_index refers to node {int(edge_index.max())} but the graph has {num_nodes} nodes"
        )
    edge_index = add_self_loops_once(edge_index.long(), num_nodes)
    batch: dict[str, Any] = {
        "x": x,
        "edge_index": edge_index,
        "structure": GraphStructure.from_edge_index(edge_index, num_nodes),
    }
    for key in ("y", "train_mask", "val_mask", "test_mask"):
        value = getattr(data, key, None)
        if value is not None:
            batch[key] = value
    return batch


def collate_single_graph(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate for node-level datasets: a batch is the one graph itself.

    Example:
        >>> collate_single_graph([{"x": 1}])
        {'x': 1}
    """
    if len(samples) != 1:
        raise GraphDataError(
            f"a node-level graph dataset yields one graph per batch, got {len(samples)}; set train.batch_size = 1 "
            "(or load it with batch_nodes = N for neighbour-sampled mini-batches)"
        )
    return dict(samples[0])


def collate_graphs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate graph-level samples into one disjoint-union batch with a ``batch`` vector.

    Example:
        >>> import torch
        >>> g = {"x": torch.ones(2, 1), "edge_index": torch.tensor([[0], [1]]), "y": torch.tensor(1)}
        >>> b = collate_graphs([g, g])
        >>> b["edge_index"].tolist(), b["batch"].tolist(), b["num_graphs"]
        ([[0, 2], [1, 3]], [0, 0, 1, 1], 2)
    """
    sizes = torch.tensor([s["x"].shape[0] for s in samples])
    offsets = torch.cumsum(sizes, 0) - sizes
    edges = [s["edge_index"] + off for s, off in zip(samples, offsets.tolist(), strict=True)]
    x = torch.cat([s["x"] for s in samples])
    edge_index = torch.cat(edges, dim=1)
    return {
        "x": x,
        "edge_index": edge_index,
        "structure": GraphStructure.from_edge_index(edge_index, int(x.shape[0])),
        "y": torch.stack([torch.as_tensor(s["y"]).reshape(()) for s in samples]),
        "batch": torch.repeat_interleave(torch.arange(len(samples)), sizes),
        "num_graphs": len(samples),
    }


class GraphSource(Protocol):
    """What :class:`NeighborSubgraphs` samples from: an incoming-edge CSR and per-node features.

    A graph held in memory (a node-level batch dict) and a graph folder read through
    memory maps (:class:`~ssl_graph.GraphFolder`) both are one.
    """

    num_nodes: int
    decodes_lazily: bool

    def csr(self) -> tuple[Tensor | IndexableArray, Tensor | IndexableArray]:
        """``(rowptr [N + 1], sources [E])``: the sources of each node's incoming edges."""
        ...

    def features(self, node_ids: Tensor) -> Tensor:
        """Float32 features of ``node_ids``, ``[len(node_ids), F]``."""
        ...

    def labels(self, node_ids: Tensor) -> Tensor | None:
        """Labels of ``node_ids``, or ``None`` for an unlabelled graph."""
        ...

    def release(self) -> None:
        """Called after each sampled batch: let go of what reading it brought in (mapped pages)."""
        ...


class _InMemoryGraph:
    """A node-level batch dict as a :class:`GraphSource` (its CSR built once)."""

    decodes_lazily = False

    def __init__(self, graph: dict[str, Any]) -> None:
        self.graph = graph
        self.num_nodes = int(graph["x"].shape[0])
        self._csr = to_csr(graph["edge_index"], self.num_nodes)

    def csr(self) -> tuple[Tensor, Tensor]:
        return self._csr

    def features(self, node_ids: Tensor) -> Tensor:
        return self.graph["x"][node_ids]  # type: ignore[no-any-return]

    def labels(self, node_ids: Tensor) -> Tensor | None:
        return self.graph["y"][node_ids] if "y" in self.graph else None

    def release(self) -> None:
        pass


class NeighborSubgraphs(Dataset[int]):
    """Seed nodes of one large graph; :meth:`collate` samples their neighbourhood subgraph.

    Used as ``DatasetSplits.pretrain`` so that a graph that does not fit in memory as a
    whole is pretrained on mini-batches. ``graph`` is a node-level batch dict held in
    memory, or any :class:`GraphSource` (a memory-mapped :class:`~ssl_graph.GraphFolder`,
    which also makes the loop give the loader workers: ``decodes_lazily``). Sampling is
    ssl-graph's vectorised sampler (:func:`~ssl_graph.functional.sample_neighbors`), or
    PyG's ``NeighborLoader`` for an in-memory graph when ``pyg-lib`` or ``torch-sparse``
    is installed (the same scheme). The subgraph's seed nodes come first, and it has
    exactly one self-loop per node (sampled self-loops are dropped, one is added).

    The draws of a batch depend only on ``(seed, epoch, first seed node)``
    (:func:`ssl_core.sample_generator`): not on which worker samples it nor on whether the
    run was resumed, so a resumed run sees the same subgraphs.

    Example:
        >>> splits = synthetic(num_nodes=300, in_dim=4, batch_nodes=32)
        >>> sub = splits.pretrain_collate(list(range(32)))
        >>> sub["num_seed_nodes"], sub["x"].shape[0] > 32
        (32, True)
    """

    def __init__(self, graph: dict[str, Any] | GraphSource, num_neighbors: Sequence[int], seed: int = 0) -> None:
        self.source: GraphSource = _InMemoryGraph(graph) if isinstance(graph, dict) else graph
        self.num_neighbors = [int(k) for k in num_neighbors]
        if not self.num_neighbors or any(k < 1 for k in self.num_neighbors):
            raise GraphDataError(f"num_neighbors needs at least one hop, each positive, got {list(num_neighbors)}")
        self.num_nodes = self.source.num_nodes
        self.decodes_lazily = self.source.decodes_lazily
        self.seed, self.epoch = seed, 0
        self._loader: Any = None
        import torch_geometric.typing as pyg_typing

        if isinstance(self.source, _InMemoryGraph) and (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE):
            from torch_geometric.data import Data
            from torch_geometric.loader import NeighborLoader

            whole = self.source.graph
            data = Data(x=whole["x"], edge_index=whole["edge_index"], num_nodes=self.num_nodes)
            self._loader = NeighborLoader(data, num_neighbors=self.num_neighbors, batch_size=1)

    def __len__(self) -> int:
        return self.num_nodes

    def __getitem__(self, index: int) -> int:
        return index

    def set_epoch(self, epoch: int) -> None:
        """Draws depend on ``(seed, epoch, first seed node)`` (:func:`ssl_core.sample_generator`)."""
        self.epoch = epoch

    def collate(self, seeds: Sequence[int]) -> dict[str, Any]:
        """The sampled subgraph of a batch of seed nodes (seeds first, ``num_seed_nodes`` of them)."""
        seed_ids = torch.as_tensor(list(seeds), dtype=torch.long)
        return self.subgraph(seed_ids, sample_generator(self.seed, self.epoch, int(seed_ids[0])))

    def subgraph(self, seed_ids: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Sample around ``seed_ids`` with ``generator``: a node-level batch dict (``num_seed_nodes`` set)."""
        if self._loader is not None:
            with torch.random.fork_rng(devices=[]):  # PyG's samplers draw from the global generator
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                sub = self._loader.filter_fn(self._loader.collate_fn(seed_ids))
            node_ids, edge_index = sub.n_id, sub.edge_index
        else:
            rowptr, sources = self.source.csr()
            node_ids, edge_index = sample_neighbors(rowptr, sources, seed_ids, self.num_neighbors, generator)
        num_nodes = int(node_ids.numel())
        edge_index = add_self_loops_once(edge_index, num_nodes)
        batch: dict[str, Any] = {
            "x": self.source.features(node_ids),
            "edge_index": edge_index,
            "structure": GraphStructure.from_edge_index(edge_index, num_nodes),
        }
        labels = self.source.labels(node_ids)
        if labels is not None:
            batch["y"] = labels
        batch["num_seed_nodes"] = int(seed_ids.numel())
        self.source.release()
        return batch


def _node_splits(
    graph: dict[str, Any],
    *,
    num_classes: int,
    info: dict[str, Any],
    batch_nodes: int | None,
    num_neighbors: Sequence[int],
) -> DatasetSplits:
    pretrain: NeighborSubgraphs | None = None
    if batch_nodes is not None:
        if batch_nodes < 1:
            raise GraphDataError(f"batch_nodes must be positive, got {batch_nodes}")
        pretrain = NeighborSubgraphs(graph, num_neighbors)
    info = {
        **info,
        "in_dim": int(graph["x"].shape[1]),
        "task": "node",
        "num_nodes": int(graph["x"].shape[0]),
        "num_edges": int(graph["edge_index"].shape[1]),
        "batch_nodes": batch_nodes,
    }
    return DatasetSplits(
        train=[graph],  # type: ignore[arg-type]
        test=[graph],  # type: ignore[arg-type]
        collate=collate_single_graph,
        modality="graph",
        num_classes=num_classes,
        info=info,
        pretrain=pretrain,
        pretrain_collate=pretrain.collate if pretrain is not None else None,
    )


def _cache_dir() -> Path:
    base = os.environ.get("SSL_GRAPH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ssl-graph"
    )
    return Path(base)


def _planetoid_root(root: str | None, name: str) -> Path:
    """Where PyG's Planetoid may write: a cache folder per source, never the user's data folder.

    The raw files of ``root/<name>/raw`` are copied (atomically) to
    ``~/.cache/ssl-graph/planetoid/<hash of root>/<name>/raw`` and processed there, so a
    read-only or shared data folder is never written to.
    """
    if root is None:
        return _cache_dir() / "planetoid" / "download"
    given = Path(root).expanduser().resolve()
    if not (given / name / "raw").is_dir() and (given / "raw").is_dir() and given.name.lower() == name.lower():
        given = given.parent  # the user pointed at .../Cora rather than its parent
    cached = _cache_dir() / "planetoid" / hashlib.sha1(str(given).encode()).hexdigest()[:12]
    raw, target = given / name / "raw", cached / name / "raw"
    if raw.is_dir() and not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        shutil.copytree(raw, staging / "raw")
        (staging / "raw").rename(target)  # atomic: a half-copied folder never looks complete
        staging.rmdir()
    return cached


def planetoid(
    root: str | None = None,
    dataset: str = "Cora",
    normalize_features: bool = True,
    batch_nodes: int | None = None,
    num_neighbors: Sequence[int] = (10, 10),
) -> DatasetSplits:
    """A Planetoid citation graph (public split) through ``torch_geometric.datasets.Planetoid``.

    Args:
        root: the folder holding ``<name>/raw/ind.<name>.*`` (read-only folders are copied
            to ``~/.cache/ssl-graph`` first); ``None`` uses that cache and downloads when online.
        normalize_features: row-normalise the features, as GraphMAE does.
        batch_nodes: pretrain on neighbour-sampled mini-batches of this many seed nodes
            instead of the whole graph (set ``train.batch_size`` to the same number).
        num_neighbors: neighbours sampled per hop for mini-batches.

    Raises:
        GraphDataError: an unknown name (with the closest match) or raw files that are
            missing and cannot be downloaded.

    Example:
        >>> # skipped in doctests: reads the shared Planetoid copy, absent outside this workspace
        >>> splits = planetoid("../shared/data/planetoid", dataset="Cora")  # doctest: +SKIP
        >>> splits.info["num_nodes"], splits.num_classes  # doctest: +SKIP
        (2708, 7)
    """
    name = dataset
    canonical = {n.lower(): n for n in PLANETOID_NAMES}
    if name.lower() not in canonical:
        match = difflib.get_close_matches(name, PLANETOID_NAMES, n=1, cutoff=0.3)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise GraphDataError(f"unknown Planetoid dataset {name!r}{hint} (known: {', '.join(PLANETOID_NAMES)})")
    name = canonical[name.lower()]
    from torch_geometric.datasets import Planetoid
    from torch_geometric.transforms import NormalizeFeatures

    folder = _planetoid_root(root, name)
    raw = (Path(root).expanduser() if root else folder) / name / "raw"
    missing = [f"ind.{name.lower()}.{s}" for s in _RAW_SUFFIXES if not (raw / f"ind.{name.lower()}.{s}").is_file()]
    try:
        loaded = Planetoid(str(folder), name, transform=NormalizeFeatures() if normalize_features else None)
    except Exception as exc:  # offline: URLError from PyG's downloader; broken raw files: others
        files = f"ind.{name.lower()}.{{{','.join(_RAW_SUFFIXES)}}}"
        raise GraphDataError(
            f"Planetoid {name}: raw files missing in {raw} ({', '.join(missing) or 'none'}) and loading them or "
            f"downloading them from {Planetoid.url} into {folder / name / 'raw'} failed ({_why(exc)}); "
            f"pass --root ROOT with ROOT/{name}/raw/{files} (e.g. --root ../shared/data/planetoid); "
            "PyG downloads missing files automatically when online (there is no download option)"
        ) from exc
    graph = graph_batch(loaded[0], name=f"Planetoid {name}")
    return _node_splits(
        graph,
        num_classes=int(loaded.num_classes),
        info={"name": name, "root": str(root) if root else str(folder)},
        batch_nodes=batch_nodes,
        num_neighbors=num_neighbors,
    )


def synthetic(
    root: str | None = None,
    num_nodes: int = 1000,
    num_classes: int = 4,
    in_dim: int = 16,
    avg_degree: float = 8.0,
    homophily: float = 0.8,
    noise: float = 1.0,
    seed: int = 0,
    batch_nodes: int | None = None,
    num_neighbors: Sequence[int] = (10, 10),
) -> DatasetSplits:
    """A stochastic-block-model graph with class-dependent Gaussian features (offline, any size).

    ``homophily`` is the fraction of edges inside a class; ``root`` is ignored (nothing is
    read). Splits: 20 train nodes per
    class, 500 validation, 1000 test (fewer for small graphs), as Planetoid's public split.

    Example:
        >>> s = synthetic(num_nodes=100, num_classes=2, in_dim=4)
        >>> s.info["num_nodes"], s.num_classes
        (100, 2)
    """
    if num_nodes < 2 * num_classes:
        raise GraphDataError(f"synthetic graph needs at least {2 * num_classes} nodes, got {num_nodes}")
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(num_classes, (num_nodes,), generator=g)
    centres = torch.randn(num_classes, in_dim, generator=g) * 2.0
    x = centres[y] + noise * torch.randn(num_nodes, in_dim, generator=g)
    num_edges = int(avg_degree * num_nodes / 2)
    src = torch.randint(num_nodes, (num_edges,), generator=g)
    same = torch.rand(num_edges, generator=g) < homophily
    # partner in the same class: a random node of that class; otherwise any node
    order = torch.argsort(y)
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    pick = (torch.rand(num_edges, generator=g) * counts[y[src]]).long()
    same_dst = order[starts[y[src]] + pick]
    dst = torch.where(same, same_dst, torch.randint(num_nodes, (num_edges,), generator=g))
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    perm = torch.randperm(num_nodes, generator=g)
    train_mask = torch.zeros(num_nodes, dtype=torch.bool)
    for c in range(num_classes):  # a loop over classes, not nodes
        members = perm[y[perm] == c][:20]
        train_mask[members] = True
    rest = perm[~train_mask[perm]]
    n_val = min(500, len(rest) // 3)
    val_mask = torch.zeros(num_nodes, dtype=torch.bool)
    val_mask[rest[:n_val]] = True
    test_mask = torch.zeros(num_nodes, dtype=torch.bool)
    test_mask[rest[n_val : n_val + min(1000, len(rest) - n_val)]] = True

    class _Graph:  # the attributes graph_batch reads
        pass

    data = _Graph()
    data.x, data.edge_index, data.y = x, edge_index, y  # type: ignore[attr-defined]
    data.train_mask, data.val_mask, data.test_mask = train_mask, val_mask, test_mask  # type: ignore[attr-defined]
    graph = graph_batch(data, name="synthetic graph")
    return _node_splits(
        graph,
        num_classes=num_classes,
        info={"name": "synthetic", "homophily": homophily},
        batch_nodes=batch_nodes,
        num_neighbors=num_neighbors,
    )


def _degree_features(graphs: list[Any], max_degree: int = 400) -> None:
    from torch_geometric.utils import degree

    degrees = [degree(g.edge_index[0], g.num_nodes).long().clamp(max=max_degree) for g in graphs]
    dim = int(max(int(d.max()) if d.numel() else 0 for d in degrees)) + 1
    for g, d in zip(graphs, degrees, strict=True):
        g.x = torch.nn.functional.one_hot(d, dim).float()


def tudataset(
    root: str | None = None,
    dataset: str = "MUTAG",
    features: Literal["auto", "degree"] = "auto",
) -> DatasetSplits:
    """A graph-classification benchmark from the TU collection (``torch_geometric.datasets.TUDataset``).

    GraphMAE's protocol pretrains on all graphs and scores a 10-fold cross-validated SVM
    on all graphs, so ``train`` and ``test`` are the same graphs. Graphs without node
    features get one-hot degrees (``features = "degree"`` forces that).

    Raises:
        GraphDataError: the dataset cannot be found or downloaded.

    Example:
        >>> # skipped in doctests: downloads MUTAG
        >>> splits = tudataset("data/TU", dataset="MUTAG")  # doctest: +SKIP
        >>> splits.info["task"]  # doctest: +SKIP
        'graph'
    """
    from torch_geometric.datasets import TUDataset

    name = dataset
    folder = str(Path(root).expanduser()) if root else str(_cache_dir() / "tu")
    try:
        loaded = TUDataset(folder, name)
    except Exception as exc:  # offline: URLError from PyG's downloader; an unknown name: HTTPError 404
        raise GraphDataError(
            f"TUDataset {name!r} is not in {Path(folder) / name / 'raw'} and loading it or downloading it from "
            f"{TUDataset.url}/{name}.zip failed ({_why(exc)}); check the name (e.g. MUTAG, PROTEINS, IMDB-BINARY) "
            f"and pass --root ROOT with ROOT/{name}/raw/{name}_A.txt, {name}_graph_indicator.txt, "
            f"{name}_graph_labels.txt (the TU format, as PyG extracts it); PyG downloads it automatically into "
            f"ROOT (or {_cache_dir() / 'tu'} without --root) when online (there is no download option)"
        ) from exc
    graphs = [loaded[i] for i in range(len(loaded))]
    if features == "degree" or graphs[0].x is None:
        _degree_features(graphs)
    samples: list[dict[str, Any]] = []
    for i, g in enumerate(graphs):
        sample = graph_batch(g, name=f"{name} graph {i}")
        sample["y"] = g.y.reshape(())
        samples.append(sample)
    labels: Tensor = torch.stack([s["y"] for s in samples])
    return DatasetSplits(
        train=samples,  # type: ignore[arg-type]
        test=samples,  # type: ignore[arg-type]
        collate=collate_graphs,
        modality="graph",
        num_classes=int(labels.max()) + 1,
        info={"in_dim": int(samples[0]["x"].shape[1]), "task": "graph", "name": name, "num_graphs": len(samples)},
    )
