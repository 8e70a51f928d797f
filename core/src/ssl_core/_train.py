"""The one training loop every method uses, in plain PyTorch.

It runs views -> objective(encoder, views) -> loss, with autocast, optional
``torch.compile``, gradient accumulation and clipping, a warm-up + cosine LR,
DDP/FSDP2 from ``torchrun``, atomic checkpoints with exact resume, NaN/inf
detection. Progress bars and logs are hook implementations (:mod:`ssl_core._loggers`).

Exact resume: the data order of each epoch comes from a sampler seeded by
``(seed, epoch)``; a resumed run rebuilds that order and skips the batches already
consumed, and restores every RNG (Python, NumPy, torch, the view generator), so
``N`` steps equal ``k`` steps + kill + resume ``N - k`` steps bit for bit on CPU.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

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
from ._device import autocast_context, move_to_device, needs_grad_scaler, resolve_precision
from ._distributed import DistributedContext, all_reduce_mean, wrap_model
from ._errors import ConfigError, NonFiniteLossError, PreemptedError
from ._loggers import logged_rows
from ._meters import ThroughputMeter, peak_memory_mb
from ._monitor import CollapseError, TrainingMonitor, monitor_interval
from ._protocols import Batch, Views
from ._sampler import LengthBucketBatchSampler, dataset_lengths
from ._schedules import cosine_schedule, warmup_cosine_lr
from ._streaming import SKIPPED_KEY, resolve_num_workers, set_epoch, skipping_collate

__all__ = ["PretrainModel", "TrainResult", "TrainState", "exported_encoder", "train"]


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
    skipped: list[str] = field(default_factory=list)
    dropped_batches: int = 0
    """Batches an iterable source left unused on some ranks because another rank's share ran out first."""
    monitors: dict[str, Any] = field(default_factory=dict)
    """The online monitors' curves and alarms (:class:`~ssl_core._monitor.MonitorHistory` as a dict)."""
    precision: str = "fp32"
    """The precision the run used (``train.precision = "auto"`` resolved for the device)."""


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


class _EpochBatches:
    """Seeded, resumable, rank-sharded batches of indices.

    Shuffled uniformly (DistributedSampler underneath), or, given ``lengths``, bucketed by
    length (similar lengths share a batch, so little padding) with the batch order shuffled.

    ``drop_last=False`` (uniform path) visits every sample exactly once per epoch: the
    shuffled order is cut into global batches, a last one with fewer samples than ranks
    joins the one before, and rank ``r`` takes ``batch[r::world]``; so every rank takes the
    same number of steps (no hang) and the ranks' last batches may differ by one sample.
    """

    def __init__(
        self,
        size: int,
        local_batch: int,
        ctx: DistributedContext,
        seed: int,
        lengths: Sequence[int] | None = None,
        drop_last: bool = True,
    ) -> None:
        self.size, self.local_batch, self.ctx, self.seed, self.drop_last = size, local_batch, ctx, seed, drop_last
        self.bucketed: LengthBucketBatchSampler | None = None
        if lengths is not None:
            self.bucketed = LengthBucketBatchSampler(
                lengths, local_batch, shuffle=True, seed=seed, drop_last=True,
                num_replicas=ctx.world_size, rank=ctx.rank,
            )  # fmt: skip
        if self.bucketed is not None:
            self.per_epoch = len(self.bucketed)
        elif drop_last:
            self.per_epoch = (size // ctx.world_size) // local_batch
        else:
            self.per_epoch = len(self._global_batches(0)) if size >= ctx.world_size else 0
        if self.per_epoch < 1:
            raise ConfigError(
                f"the training split has {size} samples, fewer than one batch of {local_batch * ctx.world_size}; "
                f"lower train.batch_size or use more data"
            )

    def _global_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + epoch)  # DistributedSampler's permutation
        order = torch.randperm(self.size, generator=generator).tolist()
        step = self.local_batch * self.ctx.world_size
        chunks = [order[i : i + step] for i in range(0, self.size, step)]
        if len(chunks) > 1 and len(chunks[-1]) < self.ctx.world_size:
            tail = chunks.pop()
            chunks[-1].extend(tail)
        return chunks

    def batches(self, epoch: int, skip: int = 0) -> list[list[int]]:
        if self.bucketed is not None:
            self.bucketed.set_epoch(epoch)
            return list(self.bucketed)[skip:]
        if not self.drop_last:
            rank, world = self.ctx.rank, self.ctx.world_size
            return [chunk[rank::world] for chunk in self._global_batches(epoch)[skip:]]
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


@dataclass
class TrainState:
    """Where training stands: what checkpointing saves and ``--resume`` restores, in one place.

    ``view_rng`` draws the views (on the training device); ``loader_rng`` keeps the
    DataLoader off the global RNG. The global Python / NumPy / torch RNGs are captured
    beside them at every checkpoint.

    Example:
        >>> from ssl_core import init_distributed
        >>> state = TrainState.fresh(seed=0, ctx=init_distributed("cpu"))
        >>> state.step, state.epoch, state.batch_in_epoch, state.history
        (0, 0, 0, [])
    """

    view_rng: torch.Generator
    loader_rng: torch.Generator
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    skipped: list[str] = field(default_factory=list)
    """Items the dataset could not decode (:class:`~ssl_core.SkippedItem`), in the order met."""
    loader_state: Any = None
    """An iterable source's position: the ``StatefulDataLoader`` state (``None`` for map-style datasets)."""
    dropped: int = 0
    """Batches an iterable source's ranks held when another rank ran out and the epoch ended for all."""
    monitors: dict[str, Any] = field(default_factory=dict)
    """The monitors' history so far (a resumed run continues its curves and does not repeat its alarms)."""

    @classmethod
    def fresh(cls, seed: int, ctx: DistributedContext) -> TrainState:
        """The state before the first step: generators seeded from ``seed`` (views also from the rank)."""
        view_rng = torch.Generator(device=ctx.device)
        view_rng.manual_seed(seed * 1_000_003 + ctx.rank)
        loader_rng = torch.Generator()
        loader_rng.manual_seed(seed)
        return cls(view_rng=view_rng, loader_rng=loader_rng)

    def checkpoint_fields(self, ctx: DistributedContext) -> dict[str, Any]:
        """The checkpoint entries of this state (collective under ``torchrun``: every rank's RNG state is gathered)."""
        rng: Any = capture_rng_state(self.view_rng)
        loader: Any = self.loader_state
        if ctx.world_size > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, (rng, loader))
            rng, loader = [pair[0] for pair in gathered], [pair[1] for pair in gathered]
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng,
            "loader_rng": self.loader_rng.get_state(),
            "history": list(self.history),
            "skipped": list(self.skipped),
            "loader_state": loader,
            "dropped": self.dropped,
            "monitors": dict(self.monitors),
        }

    def restore(self, state: Mapping[str, Any], ctx: DistributedContext) -> None:
        """Continue from a checkpoint's entries (RNGs included); older checkpoints without history resume with none."""
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rng = state["rng"]
        restore_rng_state(rng[ctx.rank] if isinstance(rng, list) else rng, self.view_rng)
        if "loader_rng" in state:
            self.loader_rng.set_state(state["loader_rng"])
        self.history = [dict(row) for row in state.get("history", [])]
        self.skipped = list(state.get("skipped", []))
        loader = state.get("loader_state")
        self.loader_state = loader[ctx.rank] if isinstance(loader, list) else loader
        self.dropped = int(state.get("dropped", 0))
        self.monitors = dict(state.get("monitors", {}))
        self.resumed_from = self.step


@dataclass
class _Parts:
    """The trainable pieces: the model (wrapped for DDP/FSDP), its optimizer, LR schedule and grad scaler."""

    model: PretrainModel
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler

    @classmethod
    def build(cls, encoder: nn.Module, objective: nn.Module, cfg: TrainConfig, ctx: DistributedContext) -> _Parts:
        model = PretrainModel(encoder, objective).to(ctx.device)
        if cfg.compile:
            model.encoder.compile()
        wrapped = wrap_model(model, ctx, "ddp" if cfg.distributed == "auto" else cfg.distributed)
        optimizer = _make_optimizer(model, cfg)
        scheduler = warmup_cosine_lr(
            optimizer, warmup_steps=cfg.total_warmup_steps(), total_steps=cfg.steps, min_lr_ratio=cfg.min_lr_ratio
        )
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=needs_grad_scaler(ctx.device, cfg.precision))
        return cls(model, wrapped, optimizer, scheduler, scaler)

    def checkpoint_fields(self) -> dict[str, Any]:
        exported = exported_encoder(self.model.objective, self.model.encoder)
        return {
            "model": self.model.state_dict(),
            "encoder": exported.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


_NAMED_SKIPS = 20
"""Skipped items named one by one in warnings (all are counted)."""


class _BatchStream:
    """Training batches across epochs, from the state's epoch and position (exact resume), rank-sharded.

    A map-style dataset is read through index batches (:class:`_EpochBatches`): resuming
    rebuilds the epoch's order and skips the batches consumed. An ``IterableDataset`` is
    read through torchdata's ``StatefulDataLoader``, whose state (every worker's position)
    is saved in each checkpoint and restored on resume; under ``torchrun`` it must give
    each rank its own share (e.g. ``datasets.distributed.split_dataset_by_node``), and the
    epoch ends on every rank when the first rank runs out (see :meth:`next`).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        collate: Callable[[Sequence[Any]], Batch],
        cfg: TrainConfig,
        ctx: DistributedContext,
        seed: int,
        state: TrainState,
    ) -> None:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(f"train.batch_size {cfg.batch_size} must be divisible by the {ctx.world_size} processes")
        self._local_batch = cfg.batch_size // ctx.world_size
        self._iterable = isinstance(dataset, IterableDataset)
        if not self._iterable:
            lengths = dataset_lengths(dataset) if cfg.bucket_by_length else None
            size = len(dataset)  # type: ignore[arg-type]
            self._epochs = _EpochBatches(size, self._local_batch, ctx, seed, lengths, drop_last=cfg.drop_last)
        self._dataset, self._collate, self._cfg, self._ctx, self._state = dataset, collate, cfg, ctx, state
        self._workers = resolve_num_workers(cfg.num_workers, dataset)
        self._loader: Any = None
        self._batches = self._open(state.epoch, state.batch_in_epoch)

    def _open(self, epoch: int, skip: int) -> Iterator[Batch]:
        set_epoch(self._dataset, epoch)  # before the workers copy the dataset
        common: dict[str, Any] = {
            "collate_fn": skipping_collate(self._collate),
            "num_workers": self._workers,
            "generator": self._state.loader_rng,
            "pin_memory": self._ctx.device.type == "cuda",
        }
        if not self._iterable:
            return iter(DataLoader(self._dataset, batch_sampler=self._epochs.batches(epoch, skip), **common))
        stateful = _stateful_loader_class()
        with warnings.catch_warnings():  # torchdata 0.11 calls a torch function that torch 2.14 deprecates
            warnings.filterwarnings("ignore", message=".*set_vital.* is deprecated")
            batching = {"batch_size": self._local_batch, "drop_last": self._cfg.drop_last}
            self._loader = stateful(self._dataset, **batching, **common)
        if skip and self._state.loader_state is not None:  # resume: every worker continues where it was
            self._loader.load_state_dict(self._state.loader_state)
        return iter(self._loader)

    def loader_state(self) -> Any:
        """What resuming an iterable source needs (its loader's state), or ``None`` for a map-style dataset."""
        return self._loader.state_dict() if self._iterable and self._loader is not None else None

    def _pull(self) -> Batch | None:
        """The next batch of this epoch, or ``None`` at its end (on every rank together for iterable sources)."""
        batch = next(self._batches, None)
        if not self._iterable or self._ctx.world_size == 1:
            return batch
        have = torch.tensor([0.0 if batch is None else 1.0], device=self._ctx.device)
        if float(all_reduce_mean(have)) == 1.0:  # every rank has one
            return batch
        if batch is not None:  # another rank ran out: this epoch ends here for all ranks
            self._state.dropped += 1
        return None

    def next(self) -> Batch:
        """The next batch on the training device; advances the state's epoch and position.

        Items the dataset skipped are recorded in the state (and named in a warning); a
        batch in which every item was skipped is passed over.
        """
        while True:
            batch = self._pull()
            if batch is None:
                self._state.epoch, self._state.batch_in_epoch = self._state.epoch + 1, 0
                self._state.loader_state = None
                self._batches = self._open(self._state.epoch, 0)
                batch = self._pull()
                if batch is None:
                    raise ConfigError(
                        f"the training data yielded no batch in epoch {self._state.epoch} "
                        f"(on rank {self._ctx.rank} or another); check that the dataset is not empty"
                    )
            self._state.batch_in_epoch += 1
            skipped = batch.pop(SKIPPED_KEY, []) if isinstance(batch, dict) else []
            for name in skipped:
                if len(self._state.skipped) < _NAMED_SKIPS:
                    warnings.warn(f"skipped an item the dataset could not read: {name}", stacklevel=2)
                self._state.skipped.append(name)
            if batch:
                moved: Batch = move_to_device(batch, self._ctx.device)
                return moved


def _stateful_loader_class() -> Any:
    """torchdata's ``StatefulDataLoader`` (imported when an iterable source is trained on)."""
    try:
        from torchdata.stateful_dataloader import StatefulDataLoader
    except ImportError as exc:
        raise ConfigError(
            "training on an IterableDataset needs torchdata's StatefulDataLoader (it saves the position of every "
            "worker for exact resume): pip install 'ssl-core[stream]'"
        ) from exc
    return StatefulDataLoader


def _restore_latest(parts: _Parts, state: TrainState, ckpt_dir: Path | None, ctx: DistributedContext) -> Path:
    if ckpt_dir is None:
        raise ConfigError("--resume needs an output directory (--out) holding checkpoints/")
    last = latest_checkpoint(ckpt_dir)
    if last is None:
        raise ConfigError(f"--resume: no checkpoint found in {ckpt_dir}; run without --resume to start fresh")
    try:
        saved = load_checkpoint(last, map_location=ctx.device, weights_only=False)
    except CheckpointError as exc:
        raise ConfigError(f"--resume: {exc}; delete that file to resume from the one before it") from exc
    parts.restore(saved)
    state.restore(saved, ctx)
    log = ckpt_dir.parent / "log.csv"
    if "history" not in saved and log.is_file():  # a checkpoint from before TrainState kept the history
        state.history = [{k: float(v) for k, v in row.items()} for row in logged_rows(log, upto=state.step)]
    return last


def _optimizer_step(
    parts: _Parts,
    batches: _BatchStream,
    views: Callable[[Batch, torch.Generator], Views],
    state: TrainState,
    cfg: TrainConfig,
    ctx: DistributedContext,
    last_ckpt: Path | None,
) -> tuple[dict[str, float], int]:
    """One optimizer step over ``cfg.accumulate`` micro-batches: ``(logged values, samples seen on this rank)``."""
    totals: dict[str, float] = {}
    samples = 0
    for micro in range(cfg.accumulate):
        batch = batches.next()
        samples += _batch_size(batch)
        no_sync = getattr(parts.wrapped, "no_sync", None)  # DDP: skip the all-reduce on non-final micro-batches
        sync = no_sync() if (micro < cfg.accumulate - 1 and callable(no_sync)) else nullcontext()
        with sync:
            with autocast_context(ctx.device, cfg.precision):
                out = parts.wrapped(views(batch, state.view_rng))
            loss = out["loss"]
            _check_finite(loss, state.step + 1, ctx, last_ckpt)
            parts.scaler.scale(loss / cfg.accumulate).backward()
        for key, val in out.items():
            totals[key] = totals.get(key, 0.0) + float(val.detach()) / cfg.accumulate
    if ctx.world_size > 1:  # log the global batch's values, not this rank's share
        totals = _mean_over_ranks(totals, ctx.device)
    optimizer = parts.optimizer
    logged = {"lr": optimizer.param_groups[0]["lr"], **totals}
    if cfg.grad_clip is not None:
        parts.scaler.unscale_(optimizer)
        logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.grad_clip))
    if cfg.weight_decay_end is not None:  # DINO-style cosine weight-decay schedule on the decayed group
        decay = cosine_schedule(state.step, cfg.steps, cfg.weight_decay, cfg.weight_decay_end)
        optimizer.param_groups[0]["weight_decay"] = logged["weight_decay"] = decay
    parts.scaler.step(optimizer)
    parts.scaler.update()
    parts.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return logged, samples


def _check_finite(loss: Tensor, step: int, ctx: DistributedContext, last_ckpt: Path | None) -> None:
    value = float(loss.detach())
    finite = math.isfinite(value)
    if ctx.world_size > 1:  # every rank must stop together, or the others hang in backward
        finite = float(all_reduce_mean(torch.tensor([0.0 if finite else 1.0], device=ctx.device))) == 0.0
    if not finite:
        raise NonFiniteLossError(step, value, str(last_ckpt) if last_ckpt else None)


class _StopSignals:
    """Notes SIGTERM / SIGUSR1 (what SLURM and cloud schedulers send before pre-emption) while training runs.

    Handlers are installed only in the main thread and restored afterwards. Training checks
    :meth:`requested` at each step boundary; under ``torchrun`` a signal on any rank stops all.
    """

    NAMES = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, number: int, frame: Any) -> None:
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def requested(self, ctx: DistributedContext) -> str | None:
        """The signal's name when training must stop now (on every rank together), else ``None``."""
        if ctx.world_size == 1:
            return self.received
        flag = torch.tensor([1.0 if self.received else 0.0], device=ctx.device)
        if float(all_reduce_mean(flag)) == 0.0:
            return None
        return self.received or "a pre-emption signal (on another rank)"


def _due(step: int, every: int, total: int, *, first: bool = False) -> bool:
    return (every > 0 and step % every == 0) or step == total or (first and step == 1)


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
    monitor_test: Dataset[Any] | None = None,
) -> TrainResult:
    """Pretrain ``encoder`` with ``objective`` on ``dataset`` for ``cfg.steps`` optimizer steps.

    Args:
        views: the view generator; called as ``views(batch, generator)`` with a generator
            on the training device.
        ctx: from :func:`ssl_core.init_distributed` (single process when not under torchrun).
        out_dir: where ``checkpoints/`` go; ``None`` writes nothing. Logs are written by
            logger hooks (``[[logger]]``), not here.
        resume: continue from the latest checkpoint in ``out_dir/checkpoints``.
        hooks: a pluggy ``PluginManager`` with ssl-core's hookspecs, or ``None``; called on
            rank 0 only.
        monitor_test: the test split, for the online kNN monitor's queries (``train.monitor_every``).

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
        PreemptedError: SIGTERM or SIGUSR1 arrived; a checkpoint was written at the step
            boundary (with ``out_dir``), and ``resume=True`` continues exactly.
        CollapseError: a collapse alarm fired with ``train.on_collapse = "stop"``; the last
            good checkpoint is kept.
    """
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, ctx.device, warn=ctx.is_main))
    parts = _Parts.build(encoder, objective, cfg, ctx)
    state = TrainState.fresh(seed, ctx)
    ckpt_dir = out_dir / "checkpoints" if out_dir is not None else None
    last_ckpt = _restore_latest(parts, state, ckpt_dir, ctx) if resume else None
    events = hooks.hook if hooks is not None and ctx.is_main else None
    if events is not None:
        config, where = dict(config_dict or {}), str(out_dir) if out_dir else None
        events.ssl_on_train_start(
            config=config, encoder=encoder, objective=objective, out_dir=where, start_step=state.step
        )
    batches = _BatchStream(dataset, collate, cfg, ctx, seed, state)
    monitor = _build_monitor(dataset, monitor_test, collate, cfg, ctx, seed, state)
    if monitor is not None and state.step == 0:  # the random-init baseline that the RankMe alarm compares to
        _watch(monitor, parts, state, cfg, ctx, events, last_ckpt)
    meter, started = ThroughputMeter(), time.perf_counter()
    parts.wrapped.train()
    with _StopSignals() as signals:
        while state.step < cfg.steps:
            logged, samples = _optimizer_step(parts, batches, views, state, cfg, ctx, last_ckpt)
            state.step += 1
            on_step_end = getattr(parts.model.objective, "on_step_end", None)
            if callable(on_step_end):
                on_step_end(state.step, cfg.steps)
            meter.update(samples * ctx.world_size)
            row = {"step": float(state.step), "epoch": float(state.epoch), **logged,
                   "samples_per_second": meter.rate(), "seconds": time.perf_counter() - started}  # fmt: skip
            if _due(state.step, cfg.log_every, cfg.steps, first=True):
                state.history.append(row)
                if events is not None:
                    events.ssl_log_metrics(step=state.step, metrics=row)
            if monitor is not None and monitor.due(state.step):
                _watch(monitor, parts, state, cfg, ctx, events, last_ckpt)
            stop = signals.requested(ctx)  # pre-emption: checkpoint at this step boundary, then stop
            if ckpt_dir is not None and (stop or _due(state.step, cfg.checkpoint_every, cfg.steps)):
                state.loader_state = batches.loader_state()
                last_ckpt = _save(ckpt_dir, parts, state, ctx, config_dict, cfg.keep_checkpoints)
            if events is not None:
                events.ssl_on_step_end(step=state.step, metrics=row)
            if stop and state.step < cfg.steps:
                raise PreemptedError(stop, state.step, str(last_ckpt) if last_ckpt else None)
    seconds = time.perf_counter() - started
    if events is not None:
        events.ssl_on_train_end(summary={"steps": state.step, "seconds": seconds})
    return TrainResult(
        steps=state.step,
        seconds=seconds,
        samples_per_second=meter.overall_rate(),
        history=state.history,
        checkpoint=str(last_ckpt) if last_ckpt else None,
        peak_memory_mb=peak_memory_mb(ctx.device),
        resumed_from=state.resumed_from,
        skipped=state.skipped,
        dropped_batches=state.dropped,
        monitors=monitor.history.as_dict() if monitor is not None else {},
        precision=cfg.precision,
    )


def _build_monitor(
    dataset: Dataset[Any],
    test: Dataset[Any] | None,
    collate: Callable[[Sequence[Any]], Batch],
    cfg: TrainConfig,
    ctx: DistributedContext,
    seed: int,
    state: TrainState,
) -> TrainingMonitor | None:
    """The online monitors (every rank computes them, so FSDP's sharded forward works; rank 0 reports)."""
    every = monitor_interval(cfg.monitor_every, cfg.steps)
    if every == 0 or every > cfg.steps:
        return None
    monitor = TrainingMonitor(dataset, collate, every=every, samples=cfg.monitor_samples, seed=seed,
                              device=ctx.device, test=test, batch_size=min(cfg.eval_batch_size, 256),
                              last_step=cfg.steps, precision=cfg.precision)  # fmt: skip
    if state.monitors:  # resumed: continue the curves, do not repeat the alarms
        monitor.restore(state.monitors)
    return monitor


def _watch(
    monitor: TrainingMonitor,
    parts: _Parts,
    state: TrainState,
    cfg: TrainConfig,
    ctx: DistributedContext,
    events: Any,
    last_ckpt: Path | None,
) -> None:
    """Measure the monitors now; log them, warn about (or stop at) a collapse alarm."""
    encoder = exported_encoder(parts.model.objective, parts.model.encoder)
    try:
        with warnings.catch_warnings():
            if not ctx.is_main:
                warnings.simplefilter("ignore")
            values, alarms = monitor.measure(state.step, encoder, parts.model.objective)
    except Exception as exc:  # the monitors are an extra: a dataset or encoder they cannot read costs no run
        monitor.every = 0
        warnings.warn(
            f"the online monitors are switched off: they could not embed the training data "
            f"({type(exc).__name__}: {exc}); set train.monitor_every = 0 to silence this",
            stacklevel=2,
        )
        return
    state.monitors = monitor.history.as_dict()
    if events is not None:
        events.ssl_log_metrics(step=state.step, metrics={"step": float(state.step), **values})
    if alarms and cfg.on_collapse == "stop":
        raise CollapseError(alarms[0], str(last_ckpt) if last_ckpt else None)


def _mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    packed = all_reduce_mean(packed)
    return dict(zip(keys, packed.tolist(), strict=False))


def _save(
    ckpt_dir: Path,
    parts: _Parts,
    state: TrainState,
    ctx: DistributedContext,
    config_dict: Mapping[str, Any] | None,
    keep: int,
) -> Path:
    """Write ``step-N.pt`` atomically on rank 0 (every rank takes part in gathering the RNG states)."""
    fields = state.checkpoint_fields(ctx)
    path = checkpoint_path(ckpt_dir, state.step)
    if ctx.is_main:
        save_checkpoint(path, {**fields, **parts.checkpoint_fields(), "config": dict(config_dict or {})})
        prune_checkpoints(ckpt_dir, keep=max(1, keep))
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return path
