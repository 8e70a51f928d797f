"""The Python API behind ``ssl run`` and ``ssl evaluate``: pretrain, then evaluate.

Example:
    >>> result = run("quickstart", overrides=["train.steps=2", "train.progress=false", "plots=false",
    ...                                       "compare_random_init=false", "evaluate=[]"])
    >>> result.metrics["train"]["steps"]
    2
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ._checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from ._config import PipelineConfig, load_config, read_pipeline, to_dict
from ._distributed import DistributedContext, cleanup_distributed, init_distributed
from ._errors import ConfigError
from ._hooks import make_plugin_manager
from ._pipeline import BuiltPipeline, build_dataset, build_encoder, build_evaluators, build_pipeline
from ._protocols import DatasetSplits
from ._registry import Registry, default_registry
from ._sampler import LengthBucketBatchSampler
from ._train import dataset_lengths, exported_encoder, train

__all__ = ["LoadedEncoder", "RunResult", "builtin_pipeline", "evaluate", "evaluate_checkpoint", "load_encoder", "run"]


@dataclass
class RunResult:
    """The outcome of :func:`run`: the metrics document and where files went."""

    metrics: dict[str, Any]
    config: PipelineConfig
    out_dir: Path | None
    encoder: nn.Module
    history: list[dict[str, float]]


def builtin_pipeline(name: str) -> Path:
    """Path of a pipeline shipped inside ssl-core (``quickstart``)."""
    ref = resources.files("ssl_core") / "pipelines" / f"{name}.toml"
    path = Path(str(ref))
    if not path.is_file():
        shipped = sorted(p.stem for p in Path(str(resources.files("ssl_core") / "pipelines")).glob("*.toml"))
        raise ConfigError(f"no built-in pipeline {name!r}; shipped: {', '.join(shipped)}")
    return path


def _resolve_source(config: str | Path | Mapping[str, Any], registry: Registry) -> str | Path | Mapping[str, Any]:
    if isinstance(config, str) and not config.endswith(".toml") and not Path(config).exists():
        if "." in config:  # a recipe name such as "vision.mae"
            recipe = registry.get("recipe", config)
            return dict(recipe())
        return builtin_pipeline(config)
    return config


def environment() -> dict[str, Any]:
    """Versions and hardware facts recorded with every run."""
    import platform

    from ._version import __version__

    return {
        "ssl_core": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _jsonable(value: Any) -> Any:
    """The JSON-representable part of ``value`` (dataset info: counts, names, skipped files); the rest is dropped."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return [v for v in items if v is not _DROP]
    if isinstance(value, Path):
        return str(value)
    return _DROP


_DROP = object()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loader(dataset: Any, splits: DatasetSplits, batch_size: int) -> DataLoader[Any]:
    """Evaluation batches in a fixed order; sorted by length when the dataset has ``lengths()`` (less padding)."""
    lengths = dataset_lengths(dataset)
    if lengths is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=splits.collate)
    buckets = LengthBucketBatchSampler(lengths, batch_size, shuffle=False)
    return DataLoader(dataset, batch_sampler=buckets, collate_fn=splits.collate)


def evaluate(
    encoder: nn.Module,
    splits: DatasetSplits,
    evaluators: Mapping[str, Any],
    *,
    batch_size: int = 512,
    hooks: Any = None,
    label: str = "",
) -> dict[str, dict[str, float]]:
    """Run each evaluator on a frozen encoder; returns ``{evaluator: {metric: value}}``."""
    results: dict[str, dict[str, float]] = {}
    train_loader = _loader(splits.train, splits, batch_size)
    test_loader = _loader(splits.test, splits, batch_size)
    for name, evaluator in evaluators.items():
        started = time.perf_counter()
        metrics = {k: float(v) for k, v in evaluator(encoder, train_loader, test_loader).items()}
        metrics["seconds"] = time.perf_counter() - started
        results[name] = metrics
        if hooks is not None:
            hooks.hook.ssl_on_evaluate_end(evaluator=f"{label}{name}", metrics=metrics)
    return results


def _plots(
    out_dir: Path, history: list[dict[str, float]], encoder: nn.Module, splits: DatasetSplits, cfg: PipelineConfig
) -> list[str]:
    from ._evaluators import embed
    from ._plots import plot_embeddings, plot_loss

    written = []
    if history:
        written.append(str(plot_loss(history, out_dir / "loss.png", title=f"{cfg.name}: pretraining loss")))
    try:
        feats, labels = embed(cast(Any, encoder), _loader(splits.test, splits, cfg.train.eval_batch_size))
    except (KeyError, ValueError):
        return written  # unlabelled test split: nothing to colour by
    written.append(
        str(
            plot_embeddings(
                feats.numpy(),
                labels.numpy(),
                out_dir / "embeddings.png",
                title=f"{cfg.name}: test embeddings (t-SNE)",
                seed=cfg.seed,
            )
        )
    )
    return written


def _write_resolved(out_dir: Path, cfg: PipelineConfig) -> None:
    import tomli_w

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.toml").write_text(tomli_w.dumps(to_dict(cfg)))


def run(
    config: str | Path | Mapping[str, Any] = "quickstart",
    *,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    registry: Registry | None = None,
    hooks: Any = None,
    root: str | None = None,
    encoder_state: Mapping[str, Any] | None = None,
) -> RunResult:
    """Pretrain then evaluate, as ``ssl run``: the same files land in ``out``.

    A pipeline with ``[[stage]]`` blocks runs its stages in order (:mod:`ssl_core._stages`);
    the result then carries ``metrics["stages"]``.

    Args:
        config: a TOML path, a mapping, a recipe name (``"vision.mae"``) or a built-in
            pipeline name (``"quickstart"``).
        out: output directory for ``config.toml``, ``checkpoints/``, ``log.csv``,
            ``metrics.json``, ``loss.png`` and ``embeddings.png``; ``None`` writes nothing.
        overrides: ``key.path=value`` strings, as ``--set``.
        resume: continue from the latest checkpoint in ``out``.
        root: dataset root passed to the dataset provider.
        encoder_state: weights to start the encoder from (an earlier stage's).
    """
    registry = registry or default_registry()
    hooks = hooks if hooks is not None else make_plugin_manager()
    raw = read_pipeline(_resolve_source(config, registry))
    if "stage" in raw:
        from ._stages import load_stages, run_stages

        staged = load_stages(raw, overrides)
        return run_stages(staged, out=out, resume=resume, registry=registry, hooks=hooks, root=root)
    cfg = load_config(raw, overrides)
    out_dir = Path(out) if out is not None else None
    if cfg.train.threads is not None:  # CPU intra-op threads; 1 is often fastest for tiny models on a busy machine
        torch.set_num_threads(cfg.train.threads)
    ctx: DistributedContext = init_distributed(cfg.train.device)
    try:
        _seed_everything(cfg.seed)
        built: BuiltPipeline = build_pipeline(cfg, registry, root=root, encoder_state=encoder_state)
        if hasattr(built.views, "to"):
            built.views.to(ctx.device)
        if out_dir is not None and ctx.is_main:
            _write_resolved(out_dir, cfg)
        result = train(
            encoder=built.encoder,
            objective=built.objective,
            views=built.views,
            dataset=built.splits.pretrain if built.splits.pretrain is not None else built.splits.train,
            collate=built.splits.pretrain_collate or built.splits.collate,
            cfg=cfg.train,
            ctx=ctx,
            seed=cfg.seed,
            out_dir=out_dir,
            resume=resume,
            config_dict=to_dict(cfg),
            hooks=hooks,
        )
        metrics: dict[str, Any] = {
            "name": cfg.name,
            "evaluations": {},
            "train": {
                "steps": result.steps,
                "seconds": result.seconds,
                "samples_per_second": result.samples_per_second,
                "final_loss": result.history[-1]["loss"] if result.history else None,
                "peak_memory_mb": result.peak_memory_mb,
                "resumed_from": result.resumed_from,
                "world_size": ctx.world_size,
                "precision": cfg.train.precision,
            },
            "environment": environment(),
            "data": {
                "name": cfg.data.name,
                "modality": built.splits.modality,
                "num_classes": built.splits.num_classes,
                "info": _jsonable(built.splits.info),
            },
        }
        encoder = exported_encoder(built.objective, built.encoder)  # DINO: the EMA teacher
        if ctx.is_main:
            metrics["evaluations"] = evaluate(
                encoder, built.splits, built.evaluators, batch_size=cfg.train.eval_batch_size, hooks=hooks
            )
            if cfg.compare_random_init and built.evaluators:
                random_init = build_encoder(cfg, built.splits, registry).to(ctx.device)
                metrics["random_init"] = evaluate(
                    random_init,
                    built.splits,
                    build_evaluators(cfg.evaluate, built.splits, registry),
                    batch_size=cfg.train.eval_batch_size,
                    hooks=hooks,
                    label="random_init/",
                )
            if out_dir is not None:
                if cfg.plots:
                    metrics["plots"] = _plots(out_dir, result.history, encoder, built.splits, cfg)
                (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return RunResult(metrics=metrics, config=cfg, out_dir=out_dir, encoder=encoder, history=result.history)
    finally:
        cleanup_distributed()


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

    The dataset is rebuilt from the stored config (``root`` overrides its folder), since
    the encoder's sizes can depend on it.

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
    splits = build_dataset(cfg, registry, root=root)
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
) -> dict[str, dict[str, float]]:
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
