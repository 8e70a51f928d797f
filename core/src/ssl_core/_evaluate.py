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

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from torch import nn
from torch.utils.data import DataLoader

from ._checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from ._config import PipelineConfig, load_config, to_dict
from ._errors import ConfigError
from ._evaluators import shared_embeddings
from ._pipeline import build_dataset, build_encoder, build_evaluators
from ._protocols import DatasetSplits
from ._registry import Registry, default_registry
from ._results import EvaluationResults
from ._sampler import LengthBucketBatchSampler, dataset_lengths
from ._streaming import resolve_num_workers, warning_collate

__all__ = ["LoadedEncoder", "eval_loader", "evaluate", "evaluate_checkpoint", "load_encoder", "write_plots"]


def eval_loader(dataset: Any, splits: DatasetSplits, batch_size: int) -> DataLoader[Any]:
    """Evaluation batches in a fixed order; sorted by length when the dataset has ``lengths()`` (less padding)."""
    lengths = dataset_lengths(dataset)
    collate, workers = warning_collate(splits.collate), resolve_num_workers(None, dataset)  # lazily decoding: workers
    if lengths is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers)
    buckets = LengthBucketBatchSampler(lengths, batch_size, shuffle=False)
    return DataLoader(dataset, batch_sampler=buckets, collate_fn=collate, num_workers=workers)


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
) -> list[str]:
    """``loss.png`` and ``embeddings.png`` (t-SNE of the test split) in ``out_dir``; returns the paths written.

    A plot that fails gives a warning naming it; the others are still written. Each
    written plot is announced to ``hooks`` through ``ssl_log_artifact``.
    """
    from ._evaluators import embed
    from ._plots import plot_embeddings, plot_loss

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

    def embeddings() -> Path | None:
        try:
            feats, labels = embed(cast(Any, encoder), eval_loader(splits.test, splits, cfg.train.eval_batch_size))
        except (KeyError, ValueError):
            return None  # unlabelled test split: nothing to colour by
        title = f"{cfg.name}: test embeddings (t-SNE)"
        return plot_embeddings(feats.numpy(), labels.numpy(), out_dir / "embeddings.png", title=title, seed=cfg.seed)

    attempt("embeddings", embeddings)
    return written


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
