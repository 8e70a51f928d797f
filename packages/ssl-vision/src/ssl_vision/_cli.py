"""``ssl vision-shards``: an image folder as WebDataset tar shards for ``vision.shards`` (a CLI hook).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="ssl")
    >>> cli.ssl_add_cli_commands(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["vision-shards", "images/", "--out", "shards"]).max_count
    10000
"""

from __future__ import annotations

import argparse

from ssl_core import hookimpl

__all__ = ["VisionShardsCommand", "cli", "vision_shards_command"]


def vision_shards_command(args: argparse.Namespace) -> int:
    """Write (or index) shards as ``ssl vision-shards`` describes; returns the exit status."""
    from ._shards import index_existing_shards, write_shards

    splits = [s for s in args.splits.split(",") if s]
    if args.index_only:
        summary = index_existing_shards(args.folder, splits=splits)
        where = args.folder
    else:
        if not args.out:
            from ssl_core import ConfigError

            raise ConfigError("ssl vision-shards FOLDER needs --out DIR (or --index-only to index shards in FOLDER)")
        summary = write_shards(
            args.folder, args.out, splits=splits, max_count=args.max_count, max_size=args.max_size * 1e6,
            seed=args.seed, progress=not args.no_progress,
        )  # fmt: skip
        where = args.out
    counts = ", ".join(f"{split} {count} images in {len(summary['shards'][split])} shards"
                       for split, count in summary["splits"].items())  # fmt: skip
    print(f"wrote {where}/shards.json: {counts}; {len(summary['classes'])} classes")
    print(f"train on it: ssl run vision.mae --set data.name=vision.shards --root {where}")
    return 0


class VisionShardsCommand:
    """The hook plugin adding ``ssl vision-shards``."""

    @hookimpl
    def ssl_add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser(
            "vision-shards",
            help="write an image folder as WebDataset tar shards with an index, for dataset vision.shards",
        )
        p.add_argument("folder", help="FOLDER/<split>/<class>/<image> (or, with --index-only, a folder of shards)")
        p.add_argument("--out", default=None, help="folder to write <split>-NNNNNN.tar, *.idx.npy and shards.json")
        p.add_argument("--splits", default="train,test", help="comma-separated split folders (default train,test)")
        p.add_argument("--max-count", type=int, default=10_000, help="images per shard at most")
        p.add_argument("--max-size", type=float, default=1000.0, help="MB per shard at most")
        p.add_argument("--seed", type=int, default=0, help="seed of the order in which images are written")
        p.add_argument("--index-only", action="store_true", help="index existing <split>-*.tar shards in FOLDER")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=vision_shards_command)


cli = VisionShardsCommand()
"""The instance registered as the ``vision.cli`` hook plugin."""
