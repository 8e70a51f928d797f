"""Frozen-encoder evaluation, plots, and encoders restored from checkpoints (``ssl evaluate``).

Example:
    >>> from ssl_core._components import MLPEncoder, digits
    >>> splits = digits()
    >>> from ssl_core._evaluators import KNNEvaluator
    >>> results = evaluate(MLPEncoder(in_dim=64), splits, {"knn": KNNEvaluator(k=[5])})
    >>> sorted(results["knn"])[:1]
    ['knn_top1@5']
"""

from __future__ import annotations

import contextvars
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Subset

from ._checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from ._config import PipelineConfig, load_config, to_dict
from ._errors import ConfigError
from ._evaluators import shared_embeddings
from ._pipeline import build_dataset, build_encoder, build_evaluators
from ._protocols import Batch, DatasetSplits
from ._registry import Registry, default_registry
from ._results import EvaluationResults
from ._sampler import LengthBucketBatchSampler, dataset_lengths
from ._streaming import SKIPPED_KEY, resolve_num_workers, skipping_collate

__all__ = [
    "EvaluationBatches",
    "LoadedEncoder",
    "eval_loader",
    "evaluate",
    "evaluate_checkpoint",
    "load_encoder",
    "skipped_in_evaluation",
    "write_plots",
]

_NAMED_SKIPS: Final = 20
"""Skipped items named in a warning each (per ``skipped_in_evaluation`` block, or per split without one)."""

_SKIPPED: contextvars.ContextVar[tuple[list[str], set[str]] | None] = contextvars.ContextVar(
    "ssl_core_skipped_in_evaluation", default=None
)


@contextmanager
def skipped_in_evaluation() -> Iterator[list[str]]:
    """Collect the names of the items evaluation batches skipped inside the block, each once, in order.

    The run records their number in ``metrics.json`` (``data.skipped_in_evaluation``). A name
    already collected is not warned about again (the random-init baseline and the plot read
    the same splits).

    Example:
        >>> with skipped_in_evaluation() as names:
        ...     pass  # evaluate(...) here
        >>> names
        []
    """
    names: list[str] = []
    token = _SKIPPED.set((names, set()))
    try:
        yield names
    finally:
        _SKIPPED.reset(token)


class EvaluationBatches:
    """The batches of one split for evaluation, without the items the dataset skipped.

    Items a lazily decoding dataset returns as :class:`~ssl_core.SkippedItem` are dropped
    in the DataLoader worker that decoded them; their names travel with the batch
    (``skipping_collate``) to the main process, which names each in a warning once and
    records it in the open :func:`skipped_in_evaluation` block. A batch of skipped items
    only is passed over. ``dataset`` and ``len()`` are the loader's.
    """

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.skipped: list[str] = []
        """Names of the items skipped so far, each once."""
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            names = batch.pop(SKIPPED_KEY, []) if isinstance(batch, dict) else []
            for name in names:
                self._report(name)
            if not isinstance(batch, dict) or batch:
                yield batch

    def _report(self, name: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        self.skipped.append(name)
        collected = _SKIPPED.get()
        if collected is not None:
            names, seen = collected
            if name in seen:
                return
            names.append(name)
            seen.add(name)
        if (len(collected[0]) if collected is not None else len(self.skipped)) <= _NAMED_SKIPS:
            warnings.warn(f"skipped an item the dataset could not read (evaluation): {name}", stacklevel=3)


def eval_loader(
    dataset: Any, splits: DatasetSplits, batch_size: int, *, num_workers: int | None = None
) -> EvaluationBatches:
    """Evaluation batches in a fixed order; sorted by length when the dataset has ``lengths()`` (less padding).

    A lazily decoding dataset gets DataLoader workers unless ``num_workers`` says otherwise;
    the items it skips are reported in the main process (:class:`EvaluationBatches`).
    """
    lengths = dataset_lengths(dataset)
    collate, workers = skipping_collate(splits.collate), resolve_num_workers(num_workers, dataset)
    if lengths is None:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers)
    else:
        buckets = LengthBucketBatchSampler(lengths, batch_size, shuffle=False)
        loader = DataLoader(dataset, batch_sampler=buckets, collate_fn=collate, num_workers=workers)
    return EvaluationBatches(loader)


def evaluate(
    encoder: nn.Module,
    splits: DatasetSplits,
    evaluators: Mapping[str, Any],
    *,
    batch_size: int = 512,
    hooks: Any = None,
    label: str = "",
) -> EvaluationResults:
    """Run each evaluator on a frozen encoder; returns ``{evaluator: {metric: value}}``.

    ``hooks`` (a plugin manager) receives ``ssl_on_evaluate_end`` after each evaluator,
    named ``f"{label}{name}"``.
    """
    results: EvaluationResults = {}
    train_loader = eval_loader(splits.train, splits, batch_size)
    test_loader = eval_loader(splits.test, splits, batch_size)
    with shared_embeddings():  # each split is embedded once, whatever the number of evaluators
        for name, evaluator in evaluators.items():
            results[name] = _timed(evaluator, encoder, train_loader, test_loader)
            if hooks is not None:
                hooks.hook.ssl_on_evaluate_end(evaluator=f"{label}{name}", metrics=results[name])
    return results


def _timed(evaluator: Any, encoder: nn.Module, train_loader: Any, test_loader: Any) -> dict[str, float]:
    started = time.perf_counter()
    metrics = {k: float(v) for k, v in evaluator(encoder, train_loader, test_loader).items()}
    metrics["seconds"] = time.perf_counter() - started
    return metrics


def write_plots(
    out_dir: Path,
    history: Sequence[Mapping[str, float]],
    encoder: nn.Module,
    splits: DatasetSplits,
    cfg: PipelineConfig,
    hooks: Any = None,
    *,
    monitors: Mapping[str, Any] | None = None,
) -> list[str]:
    """``loss.png``, ``monitor.png`` (with ``monitors``) and ``embeddings.png`` (t-SNE of the test split) in
    ``out_dir``; returns the paths written.

    A plot that fails gives a warning naming it; the others are still written. Each
    written plot is announced to ``hooks`` through ``ssl_log_artifact``.
    """
    from ._evaluators import embed
    from ._plots import plot_embeddings, plot_loss, plot_monitors

    written: list[str] = []

    def attempt(name: str, make: Any) -> None:
        try:
            path = make()
        except Exception as exc:  # a plot is an extra: it never costs the run its results
            warnings.warn(f"plot {name!r} was skipped: {type(exc).__name__}: {exc}", stacklevel=3)
            return
        if path is None:
            return
        written.append(str(path))
        if hooks is None:
            return
        try:
            hooks.hook.ssl_log_artifact(name=name, path=str(path))
        except Exception as exc:  # the plot is on disk; a logger that cannot take it costs nothing else
            warnings.warn(f"a logger failed to log plot {name!r}: {type(exc).__name__}: {exc}", stacklevel=3)

    if history:
        title = f"{cfg.name}: pretraining loss"
        attempt("loss", lambda: plot_loss([dict(row) for row in history], out_dir / "loss.png", title=title))
    if monitors and monitors.get("steps"):
        heading = f"{cfg.name}: monitors"
        attempt("monitor", lambda: plot_monitors(dict(monitors), out_dir / "monitor.png", title=heading))

    def embeddings() -> Path | None:
        plotted = _plotted_points(splits.test, seed=cfg.seed)
        try:
            feats, labels = embed(cast(Any, encoder), eval_loader(plotted, splits, cfg.train.eval_batch_size))
        except (KeyError, ValueError):
            return None  # unlabelled test split: nothing to colour by
        title = f"{cfg.name}: test embeddings (t-SNE)"
        return plot_embeddings(
            feats.float().numpy(), labels.numpy(), out_dir / "embeddings.png", title=title, seed=cfg.seed
        )

    attempt("embeddings", embeddings)
    return written


_PLOTTED_POINTS: Final = 2000
"""The t-SNE plot draws at most this many test points (``plot_embeddings``' ``max_points``)."""


class _LazySubset(Subset[Any]):
    """A subset that keeps its dataset's ``decodes_lazily`` (so that it still gets workers)."""

    @property
    def decodes_lazily(self) -> bool:
        return bool(getattr(self.dataset, "decodes_lazily", False))


def _plotted_points(dataset: Any, *, seed: int) -> Any:
    """The test items the plot draws: the same ones ``plot_embeddings`` would pick, so only they are embedded."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__") or len(dataset) <= _PLOTTED_POINTS:
        return dataset
    keep = np.random.default_rng(seed).choice(len(dataset), size=_PLOTTED_POINTS, replace=False)
    return _LazySubset(dataset, keep.tolist())


@dataclass
class LoadedEncoder:
    """An encoder restored from a checkpoint, with the dataset and pipeline config it was trained with."""

    encoder: nn.Module
    splits: DatasetSplits
    config: PipelineConfig


def load_encoder(
    checkpoint: str | Path,
    *,
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    root: str | None = None,
) -> LoadedEncoder:
    """Rebuild the encoder saved by ``ssl run`` (a checkpoint file, or a run directory: its latest one).

    The dataset is rebuilt from the stored config, since the encoder's sizes can depend
    on it: from the root the run recorded (``data.root``, written when the run was given
    one), or from ``root``, which overrides it (the data has moved). When the dataset
    cannot be rebuilt the error says so and to pass ``root`` (``--root``).

    Example:
        >>> loaded = load_encoder("runs/quickstart")  # doctest: +SKIP
        >>> loaded.encoder.embed_dim, loaded.config.name  # doctest: +SKIP
        (320, 'quickstart')
    """
    path = Path(checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise ConfigError(
                f"no checkpoint in {path} or {path / 'checkpoints'}; pass a .pt file written by `ssl run`"
            )
        path = found
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; pass a .pt file or a run directory written by `ssl run`")
    try:
        state = load_checkpoint(path, weights_only=False)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    if "config" not in state or "encoder" not in state:
        raise ConfigError(f"{path} was not written by `ssl run` (no config/encoder inside)")
    cfg = load_config(state["config"], overrides)
    registry = registry or default_registry()
    recorded = cfg.data.params.get("root")
    try:
        splits = build_dataset(cfg, registry, root=root)
    except (ConfigError, OSError) as exc:
        if root is not None:
            raise
        where = f"from the root the run recorded, {recorded}" if recorded else "(the run recorded no dataset root)"
        raise ConfigError(
            f"{exc} (while rebuilding the dataset of {path} {where}); if its data has moved, pass --root DIR to "
            "`ssl evaluate` (root= to load_encoder)"
        ) from exc
    encoder = build_encoder(cfg, splits, registry)
    encoder.load_state_dict(state["encoder"])
    return LoadedEncoder(encoder=encoder, splits=splits, config=cfg)


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    evaluators: Sequence[str] = (),
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    root: str | None = None,
) -> EvaluationResults:
    """Evaluate the encoder saved in a checkpoint (file, or a run directory), as ``ssl evaluate``."""
    registry = registry or default_registry()
    loaded = load_encoder(checkpoint, overrides=overrides, registry=registry, root=root)
    cfg = loaded.config
    if evaluators:
        cfg.evaluate = load_config({**to_dict(cfg), "evaluate": [{"name": e} for e in evaluators]}).evaluate
    if not cfg.evaluate:
        raise ConfigError("nothing to evaluate: the checkpoint's pipeline lists no [[evaluate]]; pass --evaluator NAME")
    return evaluate(
        loaded.encoder,
        loaded.splits,
        build_evaluators(cfg.evaluate, loaded.splits, registry),
        batch_size=cfg.train.eval_batch_size,
    )
