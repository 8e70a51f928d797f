"""A large synthetic graph folder written in chunks: a degree-corrected stochastic block model.

Every node has a class (uniform) and a weight drawn from a power law (``degree_exponent``),
so degrees are heavy-tailed as in real graphs. Each undirected edge picks its first end
with probability proportional to the weights, and its second end the same way among the
first end's class with probability ``homophily`` (else among all nodes). Features are a
class centre plus Gaussian noise (``synthetic``'s), so masked-feature reconstruction has
class structure to find. Each edge is stored in both directions (``num_edges``
undirected edges, ``2 * num_edges`` CSR entries); a drawn self-loop is moved to the next
node.

Memory: arrays of one entry per node (a few of them, 8 bytes each) plus one chunk of
edges; the edges are never all in memory. The CSR is built in two passes over the same
seeded chunks: the first counts each node's in-degree (giving ``indptr``), the second
draws the chunks again and writes each edge at its node's next free slot of the
memory-mapped ``indices.npy``.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp() + "/g"
    >>> meta = write_synthetic_graph(folder, num_nodes=500, num_edges=2000, in_dim=8, num_classes=4)
    >>> meta["num_nodes"], meta["num_edges"], meta["num_undirected_edges"]
    (500, 4000, 2000)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._data import GraphDataError
from ._graph_folder import FORMAT, write_folder_atomically

__all__ = ["write_synthetic_graph"]


class _Blocks:
    """Node classes, power-law weights and the class-ordered cumulative weights the edge draws search."""

    def __init__(self, num_nodes: int, num_classes: int, degree_exponent: float | None, seed: int) -> None:
        rng = np.random.default_rng([seed, 0])
        self.num_nodes = num_nodes
        self.y = rng.integers(num_classes, size=num_nodes, dtype=np.int64)
        if degree_exponent is None:
            weights = np.ones(num_nodes)
        else:  # Pareto with tail exponent degree_exponent - 1: P(degree > d) ~ d ** -(degree_exponent - 1)
            weights = (1.0 - rng.random(num_nodes)) ** (-1.0 / (degree_exponent - 1.0))
        self.order = np.argsort(self.y, kind="stable")  # nodes grouped by class
        self.cumulative = np.cumsum(weights[self.order])
        del weights
        counts = np.bincount(self.y, minlength=num_classes)
        bounds = np.concatenate([[0.0], self.cumulative])[np.concatenate([[0], np.cumsum(counts)])]
        self.class_low, self.class_width = bounds[:-1], np.diff(bounds)
        self.total = float(self.cumulative[-1])

    def node_at(self, mass: np.ndarray, *, ordered: bool = False) -> np.ndarray:
        """The node whose slice of the cumulative weight holds ``mass`` (searched in increasing order: 3x faster)."""
        if ordered:
            position = np.searchsorted(self.cumulative, mass, side="right")
        else:
            order = np.argsort(mass)
            position = np.empty(len(mass), dtype=np.int64)
            position[order] = np.searchsorted(self.cumulative, mass[order], side="right")
        nodes: np.ndarray = self.order[np.minimum(position, self.num_nodes - 1)]
        return nodes

    def edges(self, count: int, homophily: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``count`` undirected edges ``(u, v)``, ``u != v``; always the same draws for the same ``rng`` state."""
        first = np.sort(rng.random(count))  # the order of a chunk's edges carries no meaning
        second, same = rng.random(count), rng.random(count) < homophily
        u = self.node_at(first * self.total, ordered=True)
        cls = self.y[u]
        v = self.node_at(np.where(same, self.class_low[cls] + second * self.class_width[cls], second * self.total))
        v = np.where(u == v, (v + 1) % self.num_nodes, v)
        return u, v


_BLOCK = 1 << 16
"""Edges per random stream: block ``b`` draws from ``default_rng([seed, 2, b])``, so the chunk size changes no edge."""


def _edge_chunks(
    blocks: _Blocks, num_edges: int, homophily: float, seed: int, chunk_edges: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ``num_edges`` undirected edges as ``(u, v)`` chunks of about ``chunk_edges``, the same on every pass."""
    num_blocks = -(-num_edges // _BLOCK)
    per_chunk = max(1, chunk_edges // _BLOCK)
    for first in range(0, num_blocks, per_chunk):
        parts = [
            blocks.edges(min(_BLOCK, num_edges - b * _BLOCK), homophily, np.random.default_rng([seed, 2, b]))
            for b in range(first, min(num_blocks, first + per_chunk))
        ]
        yield np.concatenate([u for u, _ in parts]), np.concatenate([v for _, v in parts])


def write_synthetic_graph(
    root: str | os.PathLike[str],
    *,
    num_nodes: int,
    num_edges: int,
    in_dim: int = 128,
    num_classes: int = 8,
    homophily: float = 0.8,
    noise: float = 1.0,
    degree_exponent: float | None = 2.5,
    feature_dtype: str = "float16",
    seed: int = 0,
    chunk_edges: int = 1_000_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic graph folder (``graph.memmap``'s format) of any size in bounded memory.

    Args:
        root: the folder to create (must not exist or be empty); written beside it and
            renamed into place when complete.
        num_nodes: nodes; num_edges: undirected edges (each stored both ways).
        in_dim: features per node; feature_dtype: ``float16`` or ``float32``.
        num_classes: node classes (uniform); homophily: share of edges inside a class.
        noise: standard deviation of the features around their class centre (centres have 2).
        degree_exponent: exponent ``g`` of the power-law degree distribution (``P(d) ~ d^-g``,
            above 2); ``None`` gives every node the same expected degree.
        seed: every draw follows from it: the same arguments write the same graph, whatever
            ``chunk_edges`` (only the order of a node's neighbours in ``indices.npy`` may differ).
        chunk_edges: edges drawn per chunk (memory: about 100 bytes per edge of a chunk).
        progress: called with a line per phase (e.g. ``print``).

    Returns:
        The ``meta.json`` written (sizes, generator settings, seconds taken).

    Example:
        >>> import tempfile
        >>> meta = write_synthetic_graph(tempfile.mkdtemp() + "/g", num_nodes=100, num_edges=300, in_dim=4)
        >>> meta["feature_dtype"], meta["num_classes"]
        ('float16', 8)
    """
    if num_nodes < 2 or num_edges < 1 or in_dim < 1 or num_classes < 1:
        raise GraphDataError(
            f"a synthetic graph needs num_nodes >= 2, num_edges >= 1, in_dim >= 1 and num_classes >= 1, got "
            f"{num_nodes}, {num_edges}, {in_dim}, {num_classes}"
        )
    if not 0.0 <= homophily <= 1.0:
        raise GraphDataError(f"homophily must be in [0, 1], got {homophily}")
    if degree_exponent is not None and degree_exponent <= 2.0:
        raise GraphDataError(f"degree_exponent must be above 2 (finite mean degree), got {degree_exponent}")
    if feature_dtype not in ("float16", "float32"):
        raise GraphDataError(f"feature_dtype must be float16 or float32, got {feature_dtype!r}")
    say = progress or (lambda line: None)
    started = time.perf_counter()
    settings = {
        "generator": "degree-corrected stochastic block model (ssl_graph.write_synthetic_graph)",
        "homophily": homophily, "noise": noise, "degree_exponent": degree_exponent, "seed": seed,
    }  # fmt: skip
    meta: dict[str, Any] = {
        "format": FORMAT,
        "num_nodes": num_nodes,
        "num_edges": 2 * num_edges,
        "num_undirected_edges": num_edges,
        "num_features": in_dim,
        "feature_dtype": feature_dtype,
        "num_classes": num_classes,
        "synthetic": settings,
    }

    def write(staging: Path) -> None:
        blocks = _Blocks(num_nodes, num_classes, degree_exponent, seed)
        np.save(staging / "y.npy", blocks.y)
        _write_features(staging / "x.npy", blocks.y, in_dim, num_classes, noise, feature_dtype, seed)
        say(f"features written ({time.perf_counter() - started:.1f} s)")
        degree = np.zeros(num_nodes, dtype=np.int64)
        for u, v in _edge_chunks(blocks, num_edges, homophily, seed, chunk_edges):  # pass 1: in-degrees
            degree += np.bincount(u, minlength=num_nodes)
            degree += np.bincount(v, minlength=num_nodes)
        indptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(degree, out=indptr[1:])
        del degree
        np.save(staging / "indptr.npy", indptr)
        say(f"degrees counted ({time.perf_counter() - started:.1f} s)")
        index_dtype = np.int32 if num_nodes < 2**31 else np.int64
        shape = (2 * num_edges,)
        indices = np.lib.format.open_memmap(staging / "indices.npy", mode="w+", dtype=index_dtype, shape=shape)
        cursor = indptr[:-1].copy()  # each node's next free slot
        for u, v in _edge_chunks(blocks, num_edges, homophily, seed, chunk_edges):  # pass 2: the same, into place
            _place(indices, cursor, targets=np.concatenate([v, u]), sources=np.concatenate([u, v]))
        indices.flush()
        del indices
        say(f"edges written ({time.perf_counter() - started:.1f} s)")

    write_folder_atomically(Path(root), write, meta)
    meta["seconds"] = round(time.perf_counter() - started, 3)
    return meta


def _write_features(
    path: Path, y: np.ndarray, in_dim: int, num_classes: int, noise: float, dtype: str, seed: int
) -> None:
    """``x = 2 * centre[y] + noise * N(0, 1)``, written in row chunks into a memory-mapped ``.npy``."""
    centres = (np.random.default_rng([seed, 1]).standard_normal((num_classes, in_dim)) * 2.0).astype(np.float32)
    x = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(len(y), in_dim))
    rows = max(1, 4_000_000 // in_dim)
    for index, start in enumerate(range(0, len(y), rows)):
        stop = min(len(y), start + rows)
        draws = np.random.default_rng([seed, 3, index]).standard_normal((stop - start, in_dim), dtype=np.float32)
        x[start:stop] = centres[y[start:stop]] + noise * draws
    x.flush()


def _place(indices: np.ndarray, cursor: np.ndarray, targets: np.ndarray, sources: np.ndarray) -> None:
    """Write ``sources`` at their target's next free CSR slots and advance the cursors (vectorised)."""
    order = np.argsort(targets, kind="stable")
    targets, sources = targets[order], sources[order]
    starts = np.flatnonzero(np.concatenate([[True], targets[1:] != targets[:-1]]))
    counts = np.diff(np.append(starts, len(targets)))
    rank = np.arange(len(targets)) - np.repeat(starts, counts)  # position within the target's group
    indices[cursor[targets] + rank] = sources
    cursor[targets[starts]] += counts
