"""A graph as ``.npy`` arrays in a folder, read through memory maps: the ``graph.memmap`` dataset.

The folder (``FORMAT`` = ``ssl-graph-folder/1``)::

    FOLDER/
      x.npy        [N, F] float16 or float32   node features
      indptr.npy   [N + 1] int64               incoming-edge CSR: indptr[0] = 0, indptr[N] = E
      indices.npy  [E] int32 or int64          source node of each edge, grouped by target node
      y.npy        [N] integer                 node labels (optional)
      meta.json    {"format", "num_nodes", "num_edges", "num_features", ...}  (optional; checked when present)

Row ``i`` of the CSR lists the sources of the edges into node ``i``
(``indices[indptr[i]:indptr[i + 1]]``), as :func:`~ssl_graph.functional.to_csr`; an
undirected graph stores each edge in both directions. Self-loops in the files are
ignored: every sampled subgraph gets exactly one per node.

:func:`open_graph_folder` reads only the arrays' headers and checks that their sizes
agree (no pass over the data); :class:`GraphFolder` maps the arrays on first use in each
process (a DataLoader worker started by ``spawn`` maps them again instead of receiving a
copy). :func:`save_graph_folder` writes a graph held in memory;
:func:`~ssl_graph.write_synthetic_graph` (``ssl graph-synthetic``) writes a large
synthetic one in chunks.

Example:
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp() + "/g"
    >>> _ = save_graph_folder(folder, torch.randn(4, 3), torch.tensor([[0, 1, 2], [1, 2, 3]]), y=torch.arange(4) % 2)
    >>> graph = open_graph_folder(folder)
    >>> graph.num_nodes, graph.num_edges, graph.num_features, graph.num_classes
    (4, 3, 3, 2)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import Tensor

from ssl_core import DatasetSplits

from ._data import GraphDataError, NeighborSubgraphs, collate_single_graph
from ._mapped import MappedArray
from .functional import IndexableArray, to_csr

__all__ = ["FORMAT", "GraphFolder", "memmap", "open_graph_folder", "save_graph_folder"]

FORMAT: Final = "ssl-graph-folder/1"
_LAYOUT: Final = (
    "x.npy [N, F] float16/float32, indptr.npy [N + 1] int64, indices.npy [E] int32/int64, optional y.npy [N] "
    "and meta.json (write one with `ssl graph-synthetic DIR` or ssl_graph.save_graph_folder)"
)


def _load(path: Path, in_memory: bool) -> np.ndarray:
    """One ``.npy`` array, memory-mapped read-only (or read whole); errors name the file."""
    if not path.is_file():
        raise GraphDataError(f"graph folder {path.parent}: {path.name} is missing; expected {_LAYOUT}")
    try:
        array: np.ndarray = np.load(path, mmap_mode=None if in_memory else "r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise GraphDataError(f"graph folder {path.parent}: {path.name} is not a readable .npy array ({exc})") from exc
    return array


class GraphFolder:
    """A graph folder opened lazily: sizes from the headers, arrays mapped on first use per process.

    A :class:`~ssl_graph.GraphSource` for :class:`~ssl_graph.NeighborSubgraphs`:
    :meth:`features`, :meth:`labels` and the sampler's reads of :meth:`csr` gather only
    the rows they need from the maps, and unmap the pages read right away
    (:class:`~ssl_graph._mapped.MappedArray`): the pages stay in the page cache, but no
    longer count in the process's resident set, so a worker's memory does not grow with
    the graph as an epoch visits it. With ``in_memory=True`` the arrays are read whole
    into RAM instead (for comparison, or for a graph small enough).

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp() + "/g"
        >>> _ = save_graph_folder(folder, torch.eye(3), torch.tensor([[0, 1], [1, 2]]))
        >>> open_graph_folder(folder).features(torch.tensor([2, 0])).tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        root: Path,
        num_nodes: int,
        num_edges: int,
        num_features: int,
        num_classes: int | None,
        meta: dict[str, Any],
        in_memory: bool = False,
    ) -> None:
        self.root, self.num_nodes, self.num_edges, self.num_features = root, num_nodes, num_edges, num_features
        self.num_classes, self.meta, self.in_memory = num_classes, meta, in_memory
        self.decodes_lazily = not in_memory
        self._arrays: dict[str, np.ndarray] | None = None
        self._mapped: dict[str, MappedArray] = {}

    @property
    def has_labels(self) -> bool:
        return (self.root / "y.npy").is_file()

    def arrays(self) -> dict[str, np.ndarray]:
        """The folder's arrays (``x``, ``indptr``, ``indices``, ``y`` when present), mapped once per process."""
        if self._arrays is None:
            names = ["x", "indptr", "indices", *(["y"] if self.has_labels else [])]
            if self.in_memory:
                self._arrays = {name: _load(self.root / f"{name}.npy", in_memory=True) for name in names}
            else:
                self._mapped = {name: MappedArray(self.root / f"{name}.npy") for name in names}
                self._arrays = {name: mapped.array for name, mapped in self._mapped.items()}
        return self._arrays

    def release(self) -> None:
        """Drop every mapped page from this process's resident set (they stay in the page cache)."""
        for mapped in self._mapped.values():
            mapped.release()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if not self.in_memory:  # a spawned worker maps the files itself rather than unpickling a copy
            state["_arrays"], state["_mapped"] = None, {}
        return state

    def csr(self) -> tuple[Tensor | IndexableArray, Tensor | IndexableArray]:
        arrays = self.arrays()
        if not self.in_memory:
            return self._mapped["indptr"], self._mapped["indices"]
        return torch.from_numpy(arrays["indptr"]), torch.from_numpy(arrays["indices"])

    def _rows(self, name: str, ids: np.ndarray) -> np.ndarray:
        return self._mapped[name].take(ids) if not self.in_memory else self.arrays()[name][ids]

    def _check_ids(self, node_ids: Tensor) -> np.ndarray:
        ids = node_ids.numpy()
        if ids.size and (int(ids.max()) >= self.num_nodes or int(ids.min()) < 0):
            bad = int(ids.max()) if int(ids.max()) >= self.num_nodes else int(ids.min())
            raise GraphDataError(
                f"graph folder {self.root}: indices.npy refers to node {bad} but x.npy has {self.num_nodes} rows; "
                "the folder is corrupt or its files come from different graphs"
            )
        return ids

    def features(self, node_ids: Tensor) -> Tensor:
        self.arrays()
        return torch.from_numpy(np.asarray(self._rows("x", self._check_ids(node_ids)), dtype=np.float32))

    def labels(self, node_ids: Tensor) -> Tensor | None:
        if not self.has_labels:
            return None
        self.arrays()
        return torch.from_numpy(np.asarray(self._rows("y", self._check_ids(node_ids)), dtype=np.int64))


def open_graph_folder(root: str | os.PathLike[str], in_memory: bool = False) -> GraphFolder:
    """Open a graph folder after checking that its arrays' sizes agree (headers only, no pass over the data).

    Raises:
        GraphDataError: a missing or unreadable file, or sizes that disagree (the message
            names the file and both sizes).

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp() + "/g"
        >>> _ = save_graph_folder(folder, torch.ones(5, 2), torch.tensor([[0], [1]]))
        >>> open_graph_folder(folder).num_nodes
        5
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise GraphDataError(f"graph folder {folder} does not exist; expected a folder with {_LAYOUT}")
    x, indptr, indices = (_load(folder / f"{name}.npy", in_memory=False) for name in ("x", "indptr", "indices"))
    if x.ndim != 2 or x.dtype not in (np.float16, np.float32):
        raise GraphDataError(
            f"graph folder {folder}: x.npy must be a [num_nodes, num_features] float16 or float32 array, "
            f"got shape {x.shape} of {x.dtype}"
        )
    for name, array in (("indptr", indptr), ("indices", indices)):
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise GraphDataError(
                f"graph folder {folder}: {name}.npy must be a 1-D integer array, "
                f"got shape {array.shape} of {array.dtype}"
            )
    num_nodes, num_features = int(x.shape[0]), int(x.shape[1])
    if indptr.shape[0] != num_nodes + 1:
        raise GraphDataError(
            f"graph folder {folder}: indptr.npy has {indptr.shape[0]} entries (so {indptr.shape[0] - 1} nodes) "
            f"but x.npy has {num_nodes} rows; indptr.npy needs num_nodes + 1 = {num_nodes + 1} entries"
        )
    num_edges = int(indices.shape[0])
    first, last = int(indptr[0]), int(indptr[-1])
    if first != 0 or last != num_edges:
        raise GraphDataError(
            f"graph folder {folder}: indptr.npy runs from {first} to {last} but indices.npy has {num_edges} entries; "
            f"indptr.npy must run from 0 to the number of edges"
        )
    num_classes: int | None = None
    if (folder / "y.npy").is_file():
        y = _load(folder / "y.npy", in_memory=False)
        if y.shape != (num_nodes,) or y.dtype.kind not in "iu":
            raise GraphDataError(
                f"graph folder {folder}: y.npy has shape {y.shape} of {y.dtype} but x.npy has {num_nodes} rows; "
                f"y.npy needs one integer label per node"
            )
    meta = _read_meta(folder, num_nodes=num_nodes, num_edges=num_edges, num_features=num_features)
    if (folder / "y.npy").is_file():
        num_classes = int(meta["num_classes"]) if "num_classes" in meta else int(np.max(y)) + 1
    return GraphFolder(folder, num_nodes, num_edges, num_features, num_classes, meta, in_memory=in_memory)


def _read_meta(folder: Path, **sizes: int) -> dict[str, Any]:
    path = folder / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GraphDataError(f"graph folder {folder}: meta.json is not readable JSON ({exc})") from exc
    if meta.get("format", FORMAT) != FORMAT:
        raise GraphDataError(f"graph folder {folder}: meta.json declares format {meta['format']!r}, not {FORMAT!r}")
    source = {"num_nodes": "x.npy rows", "num_edges": "indices.npy entries", "num_features": "x.npy columns"}
    for key, actual in sizes.items():
        if key in meta and int(meta[key]) != actual:
            raise GraphDataError(
                f"graph folder {folder}: meta.json records {key} = {meta[key]} but the arrays have {actual} "
                f"({source[key]}); the files come from different graphs or were not all written"
            )
    return meta


def save_graph_folder(
    root: str | os.PathLike[str],
    x: Tensor | np.ndarray,
    edge_index: Tensor | np.ndarray,
    y: Tensor | np.ndarray | None = None,
    *,
    feature_dtype: str = "float32",
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a graph held in memory as a graph folder (edges ``source -> target`` in ``edge_index``).

    The folder is written beside its final place and renamed into it at the end, so a
    half-written folder never looks complete. Returns the ``meta.json`` written.

    Example:
        >>> import tempfile, torch
        >>> meta = save_graph_folder(tempfile.mkdtemp() + "/g", torch.ones(3, 2), torch.tensor([[0, 1], [1, 2]]))
        >>> meta["num_nodes"], meta["num_edges"], meta["format"]
        (3, 2, 'ssl-graph-folder/1')
    """
    features = np.asarray(x, dtype=feature_dtype)
    edges = torch.as_tensor(np.asarray(edge_index), dtype=torch.long)
    num_nodes = int(features.shape[0])
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= num_nodes):
        raise GraphDataError(f"edge_index refers to node {int(edges.max())} but x has {num_nodes} rows")
    rowptr, sources = to_csr(edges, num_nodes)
    index_dtype = np.int32 if num_nodes < 2**31 else np.int64
    meta: dict[str, Any] = {
        "format": FORMAT,
        "num_nodes": num_nodes,
        "num_edges": int(sources.numel()),
        "num_features": int(features.shape[1]),
        "feature_dtype": str(features.dtype),
        **({"num_classes": int(np.max(np.asarray(y))) + 1} if y is not None and len(y) else {}),
        **(extra_meta or {}),
    }

    def write(staging: Path) -> None:
        np.save(staging / "x.npy", features)
        np.save(staging / "indptr.npy", rowptr.numpy().astype(np.int64))
        np.save(staging / "indices.npy", sources.numpy().astype(index_dtype))
        if y is not None:
            np.save(staging / "y.npy", np.asarray(y, dtype=np.int64))

    write_folder_atomically(Path(root), write, meta)
    return meta


def write_folder_atomically(folder: Path, write: Any, meta: dict[str, Any]) -> None:
    """Run ``write(staging)`` in a hidden folder beside ``folder``, add ``meta.json``, rename it into place.

    ``folder`` must not exist or be empty (an existing graph is never overwritten).
    """
    folder = folder.expanduser()
    if folder.exists() and any(folder.iterdir()):
        raise GraphDataError(f"{folder} already holds files; choose a new folder for the graph")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-partial-", dir=folder.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the graph's folder is an ordinary one
    try:
        write(staging)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _eval_graph(sampler: NeighborSubgraphs, graph: GraphFolder, eval_nodes: int, seed: int) -> dict[str, Any]:
    """The sampled neighbourhood of ``eval_nodes`` random nodes, split 50/25/25 into train/val/test masks.

    Only the seed nodes carry masks; the rest is their context. The node probe embeds this
    subgraph instead of the whole graph.
    """
    rng = np.random.default_rng(seed)
    count = min(eval_nodes, graph.num_nodes)
    seeds = torch.from_numpy(rng.choice(graph.num_nodes, size=count, replace=False).astype(np.int64))
    batch = sampler.subgraph(seeds, torch.Generator().manual_seed(seed))
    total = int(batch["x"].shape[0])
    masks = {name: torch.zeros(total, dtype=torch.bool) for name in ("train_mask", "val_mask", "test_mask")}
    n_train, n_val = count // 2, count // 4
    masks["train_mask"][:n_train] = True
    masks["val_mask"][n_train : n_train + n_val] = True
    masks["test_mask"][n_train + n_val : count] = True
    return {**batch, **masks}


def memmap(
    root: str | None = None,
    num_neighbors: Sequence[int] = (10, 10),
    seed: int = 0,
    eval_nodes: int = 2000,
    in_memory: bool = False,
) -> DatasetSplits:
    """A graph folder (``FOLDER/x.npy``, ``indptr.npy``, ``indices.npy``, ``y.npy``) for neighbour-sampled pretraining.

    Training iterates over every node as a seed, in batches of ``train.batch_size``; each
    batch is the sampled ``len(num_neighbors)``-hop neighbourhood of its seeds, with the
    features gathered from the memory-mapped ``x.npy`` (DataLoader workers by default).
    Nothing is read whole at start: startup time and memory do not grow with the graph.

    Evaluation (``graph.node_probe``) embeds the sampled neighbourhood of ``eval_nodes``
    random labelled nodes (half train, a quarter validation, a quarter test), not the
    whole graph.

    Args:
        root: the graph folder (``ssl graph-synthetic DIR`` writes one).
        num_neighbors: neighbours sampled per hop (one hop per encoder layer).
        seed: seed of the sampling draws (with the epoch and the batch's first seed node)
            and of the evaluation nodes.
        eval_nodes: seed nodes of the evaluation subgraph.
        in_memory: read the arrays whole into RAM instead of mapping them.

    Raises:
        GraphDataError: no ``root``, or a folder whose files are missing or disagree in size.

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp() + "/g"
        >>> edges = torch.randint(60, (2, 300))
        >>> _ = save_graph_folder(folder, torch.randn(60, 4), edges, y=torch.arange(60) % 3)
        >>> splits = memmap(folder, num_neighbors=[3, 3], eval_nodes=20)
        >>> batch = splits.pretrain_collate(list(range(8)))
        >>> batch["num_seed_nodes"], batch["x"].shape[1], splits.num_classes
        (8, 4, 3)
    """
    if root is None:
        raise GraphDataError(f"graph.memmap needs --root FOLDER: a graph folder with {_LAYOUT}")
    if eval_nodes < 4:
        raise GraphDataError(f"graph.memmap: eval_nodes must be at least 4 (train, val, test), got {eval_nodes}")
    graph = open_graph_folder(root, in_memory=in_memory)
    sampler = NeighborSubgraphs(graph, num_neighbors, seed=seed)
    evaluation = (
        _eval_graph(sampler, graph, eval_nodes, seed)
        if graph.has_labels
        else sampler.subgraph(torch.arange(min(eval_nodes, graph.num_nodes)), torch.Generator().manual_seed(seed))
    )
    info = {
        "name": "memmap",
        "root": str(Path(root).expanduser().resolve()),
        "in_dim": graph.num_features,
        "task": "node",
        "num_nodes": graph.num_nodes,
        "num_edges": graph.num_edges,
        "eval_nodes": eval_nodes,
        "in_memory": in_memory,
    }
    return DatasetSplits(
        train=[evaluation],  # type: ignore[arg-type]
        test=[evaluation],  # type: ignore[arg-type]
        collate=collate_single_graph,
        modality="graph",
        num_classes=graph.num_classes,
        info=info,
        pretrain=sampler,
        pretrain_collate=sampler.collate,
    )
