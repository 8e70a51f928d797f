"""``ssl graph-synthetic``: write a synthetic graph folder for ``graph.memmap`` (a CLI hook).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="ssl")
    >>> cli.ssl_add_cli_commands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["graph-synthetic", "graphs/g2m", "--num-nodes", "2000000"])
    >>> args.num_nodes, args.num_edges, args.feature_dtype
    (2000000, None, 'float16')
"""

from __future__ import annotations

import argparse

from ssl_core import hookimpl

__all__ = ["GraphSyntheticCommand", "cli", "graph_synthetic_command"]


def graph_synthetic_command(args: argparse.Namespace) -> int:
    """Write the folder as ``ssl graph-synthetic`` describes; returns the exit status."""
    from ._synthetic_folder import write_synthetic_graph

    num_edges = args.num_edges if args.num_edges is not None else 10 * args.num_nodes
    meta = write_synthetic_graph(
        args.folder,
        num_nodes=args.num_nodes,
        num_edges=num_edges,
        in_dim=args.in_dim,
        num_classes=args.num_classes,
        homophily=args.homophily,
        degree_exponent=None if args.degree_exponent <= 0 else args.degree_exponent,
        feature_dtype=args.feature_dtype,
        seed=args.seed,
        progress=None if args.no_progress else print,
    )
    print(
        f"wrote {args.folder}: {meta['num_nodes']} nodes, {meta['num_undirected_edges']} undirected edges "
        f"({meta['num_edges']} CSR entries), {meta['num_features']} {meta['feature_dtype']} features, "
        f"{meta['num_classes']} classes in {meta['seconds']:.1f} s"
    )
    print(f"train on it: ssl run graph.graphmae_memmap --root {args.folder}")
    return 0


class GraphSyntheticCommand:
    """The hook plugin adding ``ssl graph-synthetic``."""

    @hookimpl
    def ssl_add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser(
            "graph-synthetic",
            help="write a synthetic graph folder (memory-mapped .npy arrays) of any size for dataset graph.memmap",
        )
        p.add_argument("folder", help="folder to create (x.npy, indptr.npy, indices.npy, y.npy, meta.json)")
        p.add_argument("--num-nodes", type=int, default=2_000_000, help="nodes (default 2,000,000)")
        p.add_argument("--num-edges", type=int, default=None, help="undirected edges (default 10 per node)")
        p.add_argument("--in-dim", type=int, default=128, help="features per node (default 128)")
        p.add_argument("--num-classes", type=int, default=8, help="node classes (default 8)")
        p.add_argument("--homophily", type=float, default=0.8, help="share of edges inside a class (default 0.8)")
        p.add_argument("--degree-exponent", type=float, default=2.5, help="power-law exponent; 0: uniform degrees")
        p.add_argument("--feature-dtype", choices=["float16", "float32"], default="float16")
        p.add_argument("--seed", type=int, default=0, help="every draw follows from it")
        p.add_argument("--no-progress", action="store_true", help="no line per phase")
        p.set_defaults(func=graph_synthetic_command)


cli = GraphSyntheticCommand()
"""The instance registered as the ``graph.cli`` hook plugin."""
