"""One pretraining pipeline inside an open distributed context: build, train, evaluate, write.

Every rank builds and trains; rank 0 alone writes ``config.toml`` and ``metrics.json``,
evaluates, plots and calls the hooks (loggers included). The other ranks return the
trained encoder with ``is_main=False`` and wait for rank 0 at the end, so a following
stage starts together.

Example:
    >>> from ssl_core._config import load_config
    >>> from ssl_core._distributed import init_distributed
    >>> cfg = load_config("core/src/ssl_core/pipelines/quickstart.toml",  # doctest: +SKIP
    ...                   ["train.steps=2", "evaluate=[]", "plots=false"])
    >>> run_pipeline(cfg, init_distributed("cpu")).metrics["train"]["steps"]  # doctest: +SKIP
    2
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._config import PipelineConfig, to_dict
from ._distributed import DistributedContext, run_on_main
from ._evaluate import evaluate, skipped_in_evaluation, write_plots
from ._hooks import guarded
from ._loggers import BUILTIN_LOGGERS, ProgressBar
from ._pipeline import BuiltPipeline, build_component, build_encoder, build_evaluators, build_pipeline
from ._registry import Registry
from ._results import MetricsDocument, RunResult, environment, jsonable, write_json_atomic
from ._train import TrainResult, exported_encoder, train

__all__ = ["attached_loggers", "run_pipeline", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs.

    Example:
        >>> seed_everything(0)
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def attached_loggers(
    hooks: Any, cfg: PipelineConfig, registry: Registry, out_dir: Path | None, ctx: DistributedContext
) -> Iterator[None]:
    """Register the pipeline's ``[[logger]]`` plugins (and the progress bar) on ``hooks`` for one run.

    Every rank builds them (a wrong name or a missing extra stops every rank, before
    training); rank 0 alone registers them. They are unregistered afterwards; a logger
    with a ``close()`` method is closed even when the run fails. A bare logger name
    (``csv``) means ssl-core's (``core.csv``).
    """
    plugins: list[Any] = []
    for spec in cfg.loggers:
        name = spec.name if "." in spec.name else f"core.{spec.name}"
        factory = BUILTIN_LOGGERS.get(name) or registry.get("logger", name)
        logger = build_component(factory, spec.params, {"out_dir": out_dir}, f"logger {name!r}")
        plugins.append(guarded(logger, f"logger {name!r}"))  # a failing logger is a warning, not a lost run
    if cfg.train.progress:
        plugins.append(guarded(ProgressBar(cfg.train.steps), "the progress bar"))
    registered: list[Any] = []
    try:
        for plugin in plugins if ctx.is_main else ():
            hooks.register(plugin)
            registered.append(plugin)
        yield
    finally:
        with ExitStack() as cleanup:  # every logger is closed and unregistered, even if one of them fails to
            for plugin in registered:
                cleanup.callback(hooks.unregister, plugin)
                close = getattr(plugin, "close", None)
                if callable(close):
                    cleanup.callback(close)


def _metrics(
    cfg: PipelineConfig, built: BuiltPipeline, result: TrainResult, ctx: DistributedContext
) -> MetricsDocument:
    return {
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
            "precision": result.precision,
        },
        "environment": environment(),
        "data": {
            "name": cfg.data.name,
            "modality": built.splits.modality,
            "num_classes": built.splits.num_classes,
            "info": jsonable(built.splits.info) or {},
            "skipped_in_training": len(result.skipped),
            "skipped_names": sorted(set(result.skipped))[:20],
            "skipped_in_evaluation": 0,  # rank 0 counts them when it evaluates
            "skipped_in_evaluation_names": [],
            "dropped_batches": result.dropped_batches,
        },
        "monitors": result.monitors,
    }


def run_pipeline(
    cfg: PipelineConfig,
    ctx: DistributedContext,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    registry: Registry,
    hooks: Any,
    root: str | None = None,
    encoder_state: Mapping[str, Any] | None = None,
) -> RunResult:
    """Pretrain then evaluate one pipeline (what ``ssl run`` does for a file without stages)."""
    if cfg.train.threads is not None:  # CPU intra-op threads; 1 is often fastest for tiny models on a busy machine
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    built = build_pipeline(cfg, registry, root=root, encoder_state=encoder_state)
    if hasattr(built.views, "to"):
        built.views.to(ctx.device)
    config_dict = to_dict(cfg)
    if out_dir is not None and ctx.is_main:
        import tomli_w

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.toml").write_text(tomli_w.dumps(config_dict))
    with attached_loggers(hooks, cfg, registry, out_dir, ctx):
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
            config_dict=config_dict,
            hooks=hooks,
            monitor_test=built.splits.test,
        )
        encoder = exported_encoder(built.objective, built.encoder)  # DINO: the EMA teacher
        metrics = _metrics(cfg, built, result, ctx)
        # rank 0 evaluates and writes while the others wait; every rank gets the results (or rank 0's error)
        metrics = run_on_main(
            ctx, lambda: _evaluate_and_write(metrics, cfg, built, encoder, result, ctx, out_dir, registry, hooks)
        )
    return RunResult(
        metrics=dict(metrics),
        config=cfg,
        out_dir=out_dir,
        encoder=encoder,
        history=result.history,
        is_main=ctx.is_main,
    )


def _evaluate_and_write(
    metrics: MetricsDocument,
    cfg: PipelineConfig,
    built: BuiltPipeline,
    encoder: torch.nn.Module,
    result: TrainResult,
    ctx: DistributedContext,
    out_dir: Path | None,
    registry: Registry,
    hooks: Any,
) -> MetricsDocument:
    batch_size = cfg.train.eval_batch_size
    with skipped_in_evaluation() as skipped:  # each unreadable item named and counted once
        metrics["evaluations"] = evaluate(encoder, built.splits, built.evaluators, batch_size=batch_size, hooks=hooks)
        if cfg.compare_random_init and built.evaluators:
            random_init = build_encoder(cfg, built.splits, registry).to(ctx.device)
            evaluators = build_evaluators(cfg.evaluate, built.splits, registry)
            metrics["random_init"] = evaluate(
                random_init, built.splits, evaluators, batch_size=batch_size, hooks=hooks, label="random_init/"
            )
        metrics["data"]["skipped_in_evaluation"] = len(skipped)
        metrics["data"]["skipped_in_evaluation_names"] = sorted(skipped)[:20]
        where = str(out_dir) if out_dir is not None else None
        if out_dir is not None:
            write_json_atomic(out_dir / "metrics.json", metrics)  # results first: a failing plot cannot lose them
        hooks.hook.ssl_on_results(metrics=dict(metrics), out_dir=where)
        if out_dir is not None and cfg.plots:
            metrics["plots"] = write_plots(
                out_dir, result.history, encoder, built.splits, cfg, hooks, monitors=result.monitors
            )
            write_json_atomic(out_dir / "metrics.json", metrics)
    hooks.hook.ssl_on_run_end(metrics=dict(metrics), out_dir=where)
    return metrics
