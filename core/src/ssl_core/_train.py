"""The one training loop every method uses, in plain PyTorch.

It runs views -> objective(encoder, views) -> loss, with autocast, optional
``torch.compile``, gradient accumulation and clipping, a warm-up + cosine LR,
DDP/FSDP2 from ``torchrun``, atomic checkpoints with exact resume, NaN/inf
detection, a progress bar and a CSV log.

Exact resume: the data order of each epoch comes from a sampler seeded by
``(seed, epoch)``; a resumed run rebuilds that order and skips the batches already
consumed, and restores every RNG (Python, NumPy, torch, the view generator), so
``N`` steps equal ``k`` steps + kill + resume ``N - k`` steps bit for bit on CPU.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._checkpoint import (
    CheckpointError,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from ._config import TrainConfig
from ._device import autocast_context, move_to_device, needs_grad_scaler
from ._distributed import DistributedContext, all_reduce_mean, wrap_model
from ._errors import ConfigError, NonFiniteLossError
from ._meters import ThroughputMeter, peak_memory_mb
from ._protocols import Batch, Views
from ._sampler import LengthBucketBatchSampler
from ._schedules import cosine_schedule, warmup_cosine_lr

__all__ = ["PretrainModel", "TrainResult", "exported_encoder", "train"]


class PretrainModel(nn.Module):
    """Encoder + objective as one module, so DDP/FSDP wrap and checkpoint both together."""

    def __init__(self, encoder: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective

    def forward(self, views: Views) -> dict[str, Tensor]:
        return self.objective(self.encoder, views)  # type: ignore[no-any-return]


def exported_encoder(objective: nn.Module, encoder: nn.Module) -> nn.Module:
    """The encoder a run evaluates and saves: ``objective.export_encoder(encoder)`` when defined, else ``encoder``.

    Objectives whose product is not the trained student (DINO's EMA teacher) define
    ``export_encoder``; it must return a module of the encoder's architecture.

    Example:
        >>> enc = nn.Linear(2, 2)
        >>> exported_encoder(nn.Identity(), enc) is enc
        True
    """
    export = getattr(objective, "export_encoder", None)
    if not callable(export):
        return encoder
    exported = export(encoder)
    if not isinstance(exported, nn.Module) or exported.state_dict().keys() != encoder.state_dict().keys():
        raise TypeError(
            f"{type(objective).__name__}.export_encoder must return a module with the encoder's parameters "
            f"({type(encoder).__name__}), got {type(exported).__name__}"
        )
    return exported


@dataclass
class TrainResult:
    """What training produced: the history and the throughput figures."""

    steps: int
    seconds: float
    samples_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    peak_memory_mb: float | None = None
    resumed_from: int | None = None


def _param_groups(model: nn.Module, weight_decay: float, decay_1d: bool = False) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 and not decay_1d else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _can_fuse(model: nn.Module) -> bool | None:
    """Use the fused Adam(W) kernel (one pass per parameter; about 4x the foreach update on CPU)
    when every trainable parameter is a float32/bf16/fp16 tensor on the CPU or a CUDA device."""
    params = [p for p in model.parameters() if p.requires_grad]
    ok = all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16, torch.float16) for p in params
    )
    return True if params and ok else None


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay, cfg.decay_bias_and_norm)
    if not any(g["params"] for g in groups):
        raise ConfigError("nothing to train: the encoder and objective have no parameters that require gradients")
    fused = _can_fuse(model)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
    if cfg.optimizer == "adam":  # L2 added to the gradient (coupled), as GraphMAE and older papers use it
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ConfigError(f"train.optimizer {cfg.optimizer!r} is not supported; use 'adamw', 'adam' or 'sgd'")


def dataset_lengths(dataset: Any) -> list[int] | None:
    """Per-item lengths when the dataset offers them (``dataset.lengths()``), else ``None``.

    Variable-length datasets (audio, sequences) expose ``lengths()`` so that batches can
    be bucketed by length (:class:`~ssl_core.LengthBucketBatchSampler`).
    """
    method = getattr(dataset, "lengths", None)
    if not callable(method):
        return None
    lengths = [int(v) for v in method()]
    return lengths if len(lengths) == len(dataset) else None


class _EpochBatches:
    """Seeded, resumable, rank-sharded batches of indices.

    Shuffled uniformly (DistributedSampler underneath), or, given ``lengths``, bucketed by
    length (similar lengths share a batch, so little padding) with the batch order shuffled.
    """

    def __init__(
        self, size: int, local_batch: int, ctx: DistributedContext, seed: int, lengths: Sequence[int] | None = None
    ) -> None:
        self.size, self.local_batch, self.ctx, self.seed = size, local_batch, ctx, seed
        self.bucketed: LengthBucketBatchSampler | None = None
        if lengths is not None:
            self.bucketed = LengthBucketBatchSampler(
                lengths, local_batch, shuffle=True, seed=seed, drop_last=True,
                num_replicas=ctx.world_size, rank=ctx.rank,
            )  # fmt: skip
        self.per_epoch = len(self.bucketed) if self.bucketed is not None else (size // ctx.world_size) // local_batch
        if self.per_epoch < 1:
            raise ConfigError(
                f"the training split has {size} samples, fewer than one batch of {local_batch * ctx.world_size}; "
                f"lower train.batch_size or use more data"
            )

    def batches(self, epoch: int, skip: int = 0) -> list[list[int]]:
        if self.bucketed is not None:
            self.bucketed.set_epoch(epoch)
            return list(self.bucketed)[skip:]
        sampler: DistributedSampler[int] = DistributedSampler(
            range(self.size),  # type: ignore[arg-type]
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [order[i * self.local_batch : (i + 1) * self.local_batch] for i in range(skip, self.per_epoch)]


def _batch_size(batch: Batch) -> int:
    x = batch.get("x")
    if isinstance(x, Tensor):
        return int(x.shape[0])
    size = batch.get("batch_size")
    return int(size) if size is not None else 1


def train(
    *,
    encoder: nn.Module,
    objective: nn.Module,
    views: Callable[[Batch, torch.Generator], Views],
    dataset: Dataset[Any],
    collate: Callable[[Sequence[Any]], Batch],
    cfg: TrainConfig,
    ctx: DistributedContext,
    seed: int = 0,
    out_dir: Path | None = None,
    resume: bool = False,
    config_dict: Mapping[str, Any] | None = None,
    hooks: Any = None,
) -> TrainResult:
    """Pretrain ``encoder`` with ``objective`` on ``dataset`` for ``cfg.steps`` optimizer steps.

    Args:
        views: the view generator; called as ``views(batch, generator)``.
        ctx: from :func:`ssl_core.init_distributed` (single process when not under torchrun).
        out_dir: where ``checkpoints/``, ``log.csv`` go; ``None`` writes nothing.
        resume: continue from the latest checkpoint in ``out_dir/checkpoints``.
        hooks: a pluggy ``PluginManager`` with ssl-core's hookspecs, or ``None``.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    device = ctx.device
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"train.batch_size {cfg.batch_size} must be divisible by the {ctx.world_size} processes")
    local_batch = cfg.batch_size // ctx.world_size
    model = PretrainModel(encoder, objective).to(device)
    if cfg.compile:
        model.encoder.compile()
    wrapped = wrap_model(model, ctx, "ddp" if cfg.distributed == "auto" else cfg.distributed)
    optimizer = _make_optimizer(model, cfg)
    scheduler = warmup_cosine_lr(
        optimizer, warmup_steps=cfg.total_warmup_steps(), total_steps=cfg.steps, min_lr_ratio=cfg.min_lr_ratio
    )
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(device, cfg.precision))
    view_rng = torch.Generator(device=device)
    view_rng.manual_seed(seed * 1_000_003 + ctx.rank)
    loader_rng = torch.Generator()  # keeps DataLoader from drawing on the global RNG
    loader_rng.manual_seed(seed)

    ckpt_dir = out_dir / "checkpoints" if out_dir is not None else None
    step, epoch, batch_in_epoch = 0, 0, 0
    resumed_from: int | None = None
    last_ckpt: Path | None = None
    if resume:
        if ckpt_dir is None:
            raise ConfigError("--resume needs an output directory (--out) holding checkpoints/")
        last_ckpt = latest_checkpoint(ckpt_dir)
        if last_ckpt is None:
            raise ConfigError(f"--resume: no checkpoint found in {ckpt_dir}; run without --resume to start fresh")
        try:
            state = load_checkpoint(last_ckpt, map_location=device, weights_only=False)
        except CheckpointError as exc:
            raise ConfigError(f"--resume: {exc}; delete that file to resume from the one before it") from exc
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rng = state["rng"]
        restore_rng_state(rng[ctx.rank] if isinstance(rng, list) else rng, view_rng)
        if "loader_rng" in state:
            loader_rng.set_state(state["loader_rng"])
        resumed_from = step

    log_path = out_dir / "log.csv" if out_dir is not None and ctx.is_main else None
    history: list[dict[str, float]] = _read_history(log_path, upto=step) if resume and log_path else []
    fields: list[str] | None = list(history[0]) if history else None
    if hooks is not None:
        hooks.hook.ssl_on_train_start(
            config=dict(config_dict or {}),
            encoder=encoder,
            objective=objective,
            out_dir=str(out_dir) if out_dir else None,
        )

    lengths = dataset_lengths(dataset) if cfg.bucket_by_length else None
    epochs = _EpochBatches(len(dataset), local_batch, ctx, seed, lengths)  # type: ignore[arg-type]

    def batches_from(epoch: int, skip: int) -> Iterator[Batch]:
        loader = DataLoader(
            dataset,
            batch_sampler=epochs.batches(epoch, skip),
            collate_fn=collate,
            num_workers=cfg.num_workers,
            generator=loader_rng,
            pin_memory=device.type == "cuda",
        )
        return iter(loader)

    data = batches_from(epoch, batch_in_epoch)
    meter = ThroughputMeter()
    progress = _progress(cfg, ctx, initial=step)
    started = time.perf_counter()
    wrapped.train()
    try:
        while step < cfg.steps:
            totals: dict[str, float] = {}
            samples = 0
            for micro in range(cfg.accumulate):
                try:
                    batch = next(data)
                except StopIteration:
                    epoch, batch_in_epoch = epoch + 1, 0
                    data = batches_from(epoch, 0)
                    batch = next(data)
                batch_in_epoch += 1
                batch = move_to_device(batch, device)
                samples += _batch_size(batch)
                last_micro = micro == cfg.accumulate - 1
                no_sync = getattr(wrapped, "no_sync", None)  # DDP: skip the all-reduce on non-final micro-batches
                sync = no_sync() if (not last_micro and callable(no_sync)) else _null()
                with sync:
                    with autocast_context(device, cfg.precision):
                        out = wrapped(views(batch, view_rng))
                    loss = out["loss"]
                    value = float(loss.detach())
                    finite = math.isfinite(value)
                    if ctx.world_size > 1:  # every rank must stop together, or the others hang in backward
                        finite = float(all_reduce_mean(torch.tensor([0.0 if finite else 1.0], device=device))) == 0.0
                    if not finite:
                        raise NonFiniteLossError(step + 1, value, str(last_ckpt) if last_ckpt else None)
                    scaler.scale(loss / cfg.accumulate).backward()
                for key, val in out.items():
                    totals[key] = totals.get(key, 0.0) + float(val.detach()) / cfg.accumulate
            if ctx.world_size > 1:  # log the global batch's values, not this rank's share
                totals = _mean_over_ranks(totals, device)
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                totals["grad_norm"] = float(grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            if cfg.weight_decay_end is not None:  # DINO-style cosine weight-decay schedule on the decayed group
                optimizer.param_groups[0]["weight_decay"] = cosine_schedule(
                    step, cfg.steps, cfg.weight_decay, cfg.weight_decay_end
                )
                totals["weight_decay"] = optimizer.param_groups[0]["weight_decay"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            on_step_end = getattr(model.objective, "on_step_end", None)
            if callable(on_step_end):
                on_step_end(step, cfg.steps)
            meter.update(samples * ctx.world_size)
            row = {
                "step": float(step),
                "epoch": float(epoch),
                "lr": lr,
                **totals,
                "samples_per_second": meter.rate(),
                "seconds": time.perf_counter() - started,
            }
            if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
                history.append(row)
                if log_path is not None:
                    fields = _append_csv(log_path, row, fields)
                if hooks is not None and ctx.is_main:
                    hooks.hook.ssl_log_metrics(step=step, metrics=row)
            if progress is not None:
                progress.set_postfix(loss=f"{totals['loss']:.4f}", refresh=False)
                progress.update(1)
            if ckpt_dir is not None and (
                (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps
            ):
                last_ckpt = _save(
                    ckpt_dir,
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    view_rng,
                    loader_rng,
                    step,
                    epoch,
                    batch_in_epoch,
                    ctx,
                    config_dict,
                    cfg.keep_checkpoints,
                )
            if hooks is not None and ctx.is_main:
                hooks.hook.ssl_on_step_end(step=step, metrics=row)
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - started
    result = TrainResult(
        steps=step,
        seconds=seconds,
        samples_per_second=meter.overall_rate(),
        history=history,
        checkpoint=str(last_ckpt) if last_ckpt else None,
        peak_memory_mb=peak_memory_mb(device),
        resumed_from=resumed_from,
    )
    if hooks is not None and ctx.is_main:
        hooks.hook.ssl_on_train_end(summary={"steps": step, "seconds": seconds})
    return result


def _mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    packed = all_reduce_mean(packed)
    return dict(zip(keys, packed.tolist(), strict=False))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _save(
    ckpt_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    view_rng: torch.Generator,
    loader_rng: torch.Generator,
    step: int,
    epoch: int,
    batch_in_epoch: int,
    ctx: DistributedContext,
    config_dict: Mapping[str, Any] | None,
    keep: int,
) -> Path:
    rng: Any = capture_rng_state(view_rng)
    if ctx.world_size > 1:
        import torch.distributed as dist

        gathered: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(gathered, rng)
        rng = gathered
    path = checkpoint_path(ckpt_dir, step)
    if ctx.is_main:
        state = {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "model": model.state_dict(),
            "encoder": exported_encoder(model.objective, model.encoder).state_dict(),  # type: ignore[arg-type]
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "loader_rng": loader_rng.get_state(),
            "config": dict(config_dict or {}),
        }
        save_checkpoint(path, state)
        prune_checkpoints(ckpt_dir, keep=max(1, keep))
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return path


def _progress(cfg: TrainConfig, ctx: DistributedContext, initial: int) -> Any:
    if not (cfg.progress and ctx.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=initial, desc="pretrain", unit="step", dynamic_ncols=True)


def _append_csv(path: Path, row: Mapping[str, float], fields: list[str] | None) -> list[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = fields is None or not path.exists()
    fields = fields or list(row)
    with path.open("a" if not new else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in fields})
    return fields


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
    """Rows of an earlier run's log up to ``upto``; the file is rewritten without later rows."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    rows = [r for r in rows if r.get("step", 0) <= upto]
    if rows:
        fields = list(rows[0])
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.unlink()
    return rows
