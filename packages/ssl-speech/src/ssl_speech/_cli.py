"""``ssl hubert-labels`` and ``ssl speech-manifest`` (CLI hooks of the ``ssl_core.hooks`` group).

``ssl speech-manifest FOLDER --out DIR`` lists a corpus's files and lengths for
``speech.manifest`` (:func:`ssl_speech.write_manifest`). ``ssl hubert-labels`` makes
HuBERT's frame targets in one command.

Iteration 1 clusters 39-d MFCCs of a dataset; iteration 2 clusters a transformer layer
of a pretrained run (``--from-run``), on the dataset that run was trained on::

    ssl hubert-labels --root ../shared/data/fsdd/recordings --out runs/fsdd-mfcc100.pt
    ssl run speech.hubert --root ../shared/data/fsdd/recordings --set data.labels=runs/fsdd-mfcc100.pt --out runs/h1
    ssl hubert-labels --from-run runs/h1 --layer 3 --clusters 500 --out runs/fsdd-h1-l3.pt

Any speech dataset works the same way (``--data speech.audio_folder``, ``speech.librispeech``,
``speech.manifest``); the command prints the ``ssl run speech.hubert`` line that trains on
its labels with that dataset and its options (:func:`train_command`).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="ssl")
    >>> cli.ssl_add_cli_commands(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["hubert-labels", "--out", "l.pt"]).clusters
    100
    >>> parser.parse_args(["speech-manifest", "audio/", "--out", "m", "--layout", "fsdd"]).valid_fraction
    0.01
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ssl_core import hookimpl

__all__ = ["HubertLabelsCommand", "cli", "hubert_labels_command", "speech_manifest_command", "train_command"]


def _options(pairs: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs as dataset parameters; values are parsed as TOML, as ``--set`` does.

    Example:
        >>> _options(["limit=100", "progress=false", "speakers=['jackson']"])
        {'limit': 100, 'progress': False, 'speakers': ['jackson']}
    """
    from ssl_core import ConfigError, apply_overrides

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE (e.g. --option limit=100), got {pair!r}")
        apply_overrides(options, [pair])
    return options


def _toml_value(value: Any) -> str:
    """``value`` as ``--set`` reads it back (TOML; a string bare when that parses back to itself).

    Example:
        >>> [_toml_value(v) for v in ("digit", "100", 16, False, 0.5, ["a b"], {"k": 1})]
        ['digit', '"100"', '16', 'false', '0.5', '["a b"]', '{k = 1}']
    """
    import json

    from ssl_core import apply_overrides

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        bare = " " not in value and apply_overrides({}, [f"v={value}"])["v"] == value
        return value if bare else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {_toml_value(v)}" for key, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def train_command(
    labels: str,
    data: str = "speech.fsdd",
    root: str | None = None,
    options: Mapping[str, Any] | None = None,
    num_clusters: int = 100,
    probe: bool = True,
) -> str:
    """The ``ssl run speech.hubert`` command that trains on the label file ``labels`` made from dataset ``data``.

    The dataset is the recipe's ``data`` argument (every speech dataset takes
    ``data.labels``); its options become ``--set data.KEY=VALUE``, so the run builds the
    same utterances the labels were made from. ``probe = False`` (a dataset without class
    labels) adds ``--set evaluate=[]``.

    Example:
        >>> print(train_command("l.pt", "speech.audio_folder", "a b", {"seed": 1}))
        ssl run speech.hubert --recipe data=speech.audio_folder --root 'a b' --set data.labels=l.pt --set data.seed=1
        >>> print(train_command("l.pt", root="fsdd", num_clusters=50))
        ssl run speech.hubert --root fsdd --set data.labels=l.pt --recipe num_clusters=50
    """
    parts = ["ssl", "run", "speech.hubert"]
    if data != "speech.fsdd":
        parts += ["--recipe", f"data={data}"]
    if root is not None:
        parts += ["--root", root]
    parts += ["--set", f"data.labels={_toml_value(labels)}"]
    if num_clusters != 100:
        parts += ["--recipe", f"num_clusters={num_clusters}"]
    for key, value in (options or {}).items():
        if key not in ("labels", "root", "name"):
            parts += ["--set", f"data.{key}={_toml_value(value)}"]
    if not probe:
        parts += ["--set", "evaluate=[]"]
    return shlex.join(parts)


def hubert_labels_command(args: argparse.Namespace) -> int:
    """Make, check and save HuBERT labels as ``ssl hubert-labels`` describes; returns the exit status."""
    import ssl_core
    from ssl_core import ConfigError

    from ._labels import hubert_labels, save_labels

    encoder = None
    if args.from_run:
        loaded = ssl_core.load_encoder(args.from_run, root=args.root)
        splits, encoder = loaded.splits, loaded.encoder
        source = "layer"
        data = loaded.config.data.name  # the run's dataset, with its options (not its old labels)
        options = {k: v for k, v in loaded.config.data.params.items() if k not in ("labels", "root")}
        root = args.root or loaded.config.data.params.get("root")
    else:
        if args.source == "layer":
            raise ConfigError("--source layer clusters a pretrained encoder's layer: pass --from-run RUN_DIR")
        data, options, root = args.data, _options(args.option), args.root
        if "labels" in options:
            raise ConfigError("--option labels=... attaches old labels; make new ones from the dataset without it")
        provider = ssl_core.default_registry().get("dataset", data)
        splits = provider(**options, **({"root": root} if root else {}))
        source = "mfcc"
    if splits.modality != "audio":
        raise ConfigError(f"HuBERT labels need an audio dataset; {data!r} is {splits.modality!r}")
    labels = hubert_labels(
        splits,
        source=source,  # type: ignore[arg-type]
        encoder=encoder,
        layer=args.layer,
        num_clusters=args.clusters,
        max_frames=args.max_frames,
        seed=args.seed,
    )
    path = save_labels(labels, args.out)
    frames = sum(len(t) for t in labels["train"])
    what = "MFCC + deltas" if source == "mfcc" else f"layer {args.layer} of {args.from_run}"
    print(
        f"wrote {path}: {args.clusters} clusters of {what}; {len(labels['train'])} train and "
        f"{len(labels['test'])} test utterances, {frames} train frames, k-means inertia {labels['inertia']:.4g}"
    )
    command = train_command(str(path), data, root, options, args.clusters, probe=(splits.num_classes or 0) > 1)
    print(f"train with it: {command}")
    return 0


def speech_manifest_command(args: argparse.Namespace) -> int:
    """Write ``train.tsv`` / ``test.tsv`` (+ ``.labels``, ``manifest.json``) as ``ssl speech-manifest`` describes."""
    from ._manifest import write_manifest

    subsets = [s for s in args.subsets.split(",") if s] if args.subsets else None
    extensions = [e for e in args.ext.split(",") if e]
    summary = write_manifest(
        args.folder,
        args.out,
        layout=args.layout,
        valid_fraction=args.valid_fraction,
        extensions=extensions,
        subsets=subsets,
        test_takes=args.test_takes,
        seed=args.seed,
        progress=not args.no_progress,
    )
    counts = summary["splits"]
    rate = summary["sample_rate"] or "mixed"
    hours = summary["hours"]
    length = f", {hours['train']} h + {hours['test']} h" if hours["train"] is not None else ""
    print(
        f"wrote {args.out}/train.tsv ({counts['train']} files) and test.tsv ({counts['test']} files){length}; "
        f"{rate} Hz; labels {', '.join(summary['label_columns'])}; split {summary['split_rule']}"
        + (f"; left out {summary['skipped_files']} unreadable files" if summary["skipped_files"] else "")
    )
    print(f"train on it: ssl run speech.wav2vec2 --set data.name=speech.manifest --root {args.out}")
    return 0


class HubertLabelsCommand:
    """The hook plugin adding ``ssl hubert-labels`` and ``ssl speech-manifest``."""

    @hookimpl
    def ssl_add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        self._add_manifest(subparsers)
        p = subparsers.add_parser(
            "hubert-labels",
            help="HuBERT frame targets: k-means on MFCCs (iteration 1) or on a pretrained run's layer (iteration 2)",
        )
        p.add_argument("--out", required=True, help="label file to write (.pt)")
        p.add_argument("--data", default="speech.fsdd", help="dataset name (default speech.fsdd)")
        p.add_argument("--root", default=None, help="dataset folder (e.g. ../shared/data/fsdd/recordings)")
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
        p.add_argument("--source", choices=["mfcc", "layer"], default="mfcc", help="what to cluster")
        p.add_argument("--from-run", default=None, help="run directory or checkpoint of the iteration-1 model")
        p.add_argument("--layer", type=int, default=6, help="transformer layer to cluster (1-based)")
        p.add_argument("--clusters", type=int, default=100, help="k (HuBERT: 100, then 500)")
        p.add_argument("--max-frames", type=int, default=250_000, help="train frames k-means sees at most")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=hubert_labels_command)

    @staticmethod
    def _add_manifest(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser(
            "speech-manifest",
            help="list a corpus's audio files with their lengths (fairseq .tsv manifests) for dataset speech.manifest",
        )
        p.add_argument("folder", help="audio folder (FSDD recordings, the folder holding LibriSpeech/, any folder)")
        p.add_argument("--out", required=True, help="folder to write train.tsv, test.tsv, *.labels, manifest.json")
        p.add_argument("--layout", choices=["folder", "fsdd", "librispeech"], default="folder")
        p.add_argument("--valid-fraction", type=float, default=0.01, help="held-out share (folder, librispeech)")
        p.add_argument("--ext", default="wav,flac,ogg,mp3", help="comma-separated extensions (folder, librispeech)")
        p.add_argument("--subsets", default=None, help="LibriSpeech subsets, comma-separated (default: train-*)")
        p.add_argument("--test-takes", type=int, default=5, help="FSDD takes 0..N-1 are the test split")
        p.add_argument("--seed", type=int, default=0, help="seed of the held-out hash")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=speech_manifest_command)


cli = HubertLabelsCommand()
"""The instance registered as the ``speech.cli`` hook plugin."""
