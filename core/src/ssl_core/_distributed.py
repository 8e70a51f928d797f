"""Multi-process training helpers for ``torchrun``: process group, gathers, model wrapping, samplers.

Everything degrades to a no-op in a single process, so a training loop can call these
functions unconditionally::

    ctx = init_distributed()              # reads RANK / WORLD_SIZE / LOCAL_RANK from torchrun
    model = wrap_model(model, ctx, "ddp")
    sampler = distributed_sampler(dataset, ctx, shuffle=True, seed=0, drop_last=True)
    ...
    cleanup_distributed()
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ._device import resolve_device

__all__ = [
    "DistributedContext",
    "all_gather_with_grad",
    "all_reduce_mean",
    "broadcast_from_main",
    "cleanup_distributed",
    "distributed_sampler",
    "distributed_session",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "run_on_main",
    "wrap_model",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. ``backend`` is ``None`` without a process group.

    Example:
        >>> ctx = DistributedContext(0, 0, 1, torch.device("cpu"), None, True)
        >>> ctx.is_distributed
        False
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None
    is_main: bool
    wait_group: Any = field(default=None, compare=False, repr=False)
    """A Gloo group with a long timeout (:data:`MAIN_WORK_TIMEOUT`) in which the other ranks wait for rank 0's work."""

    @property
    def is_distributed(self) -> bool:
        """Whether a process group with more than one process is in use."""
        return self.world_size > 1


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialized.

    Example:
        >>> is_distributed()
        False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Whether this process is rank 0 of the process group, or there is no process group.

    Example:
        >>> is_main_process()
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from err


def init_distributed(device: str | torch.device | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment, or describe a single process.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` via
    the ``env://`` rendezvous). ``device`` is resolved with :func:`resolve_device` (``None``
    means ``"auto"``); with several processes on CUDA, an index-less ``"cuda"`` becomes
    ``cuda:LOCAL_RANK`` and is made current. The backend is NCCL on CUDA, Gloo otherwise.
    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) no process group is created. An
    already initialized process group is reused.

    Example:
        >>> ctx = init_distributed("cpu")  # no torchrun variables here
        >>> (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main)
        (0, 1, None, True)
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world_size > 1 else 0)
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
    dev = resolve_device("auto" if device is None else device)
    if world_size <= 1:
        return DistributedContext(0, 0, 1, dev, None, True)

    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if dev.type == "cuda":
        if cast("int | None", dev.index) is None:  # torch types index as int, but it may be None
            dev = torch.device("cuda", local_rank)
            resolve_device(dev)  # clear error if LOCAL_RANK exceeds the visible devices
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        backend = str(dist.get_backend())
    else:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; launch with torchrun "
                "or set MASTER_ADDR and MASTER_PORT"
            )
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistributedContext(rank, local_rank, world_size, dev, backend, rank == 0)


def cleanup_distributed() -> None:
    """Destroy the default process group if there is one; safe to call always.

    Example:
        >>> cleanup_distributed()
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(device: str | torch.device | None = None) -> Iterator[DistributedContext]:
    """Open the process group for one ``run`` (see :func:`init_distributed`) and close only what it opened.

    A process group the caller created before is reused and left alone, so a script that
    calls :func:`ssl_core.run` several times under ``torchrun`` keeps its group.

    Example:
        >>> with distributed_session("cpu") as ctx:
        ...     ctx.world_size
        1
    """
    owned = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device)
    if ctx.is_distributed:  # rank 0's evaluation can outlast NCCL's 10-minute watchdog: wait in Gloo, patiently
        ctx = replace(ctx, wait_group=dist.new_group(backend="gloo", timeout=MAIN_WORK_TIMEOUT))
    try:
        yield ctx
    finally:
        if owned:
            cleanup_distributed()
        elif ctx.wait_group is not None:
            dist.destroy_process_group(ctx.wait_group)


MAIN_WORK_TIMEOUT: timedelta = timedelta(hours=12)
"""How long the other ranks wait for rank 0's evaluation, plots or task stage."""

T = TypeVar("T")


def run_on_main(ctx: DistributedContext, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 while the other ranks wait; every rank gets its result, or raises its error.

    An exception on rank 0 is re-raised there and reported on the other ranks as a
    :class:`RuntimeError` naming it, so no rank is left waiting. In a single process this
    is ``work()``.

    Example:
        >>> run_on_main(init_distributed("cpu"), lambda: {"labels": "a.pt"})
        {'labels': 'a.pt'}
    """
    if not ctx.is_distributed:
        return work()
    outcome: tuple[bool, Any] = (True, None)
    error: BaseException | None = None
    if ctx.is_main:
        try:
            outcome = (True, work())
        except BaseException as exc:  # every rank must learn of it, then rank 0 re-raises the original
            error, outcome = exc, (False, f"{type(exc).__name__}: {exc}")
    outcome = broadcast_from_main(ctx, outcome)
    if error is not None:
        raise error
    if not outcome[0]:
        raise RuntimeError(f"rank 0 failed, so rank {ctx.rank} stops too: {outcome[1]}")
    return cast(T, outcome[1])


def broadcast_from_main(ctx: DistributedContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself in a single process.

    Example:
        >>> broadcast_from_main(init_distributed("cpu"), {"labels": "a.pt"})
        {'labels': 'a.pt'}
    """
    if not ctx.is_distributed:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, group=ctx.wait_group)
    return box[0]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradients of all ranks for the local slice."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        world_size = dist.get_world_size()
        local = tensor.contiguous()
        size = torch.tensor([local.shape[0]], device=local.device, dtype=torch.long)
        sizes = [torch.empty_like(size) for _ in range(world_size)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        if local.shape[0] < longest:  # all_gather needs equal shapes: pad, then trim
            pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
            local = torch.cat([local, pad])
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local)
        rank = dist.get_rank()
        ctx.start = sum(counts[:rank])
        ctx.count = counts[rank]
        return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> Tensor:
        grad = grad_outputs[0].contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.count]


def all_gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from all ranks along dim 0, keeping gradients to every rank's input.

    The backward pass all-reduces (sums) the gradient of the gathered tensor and returns
    this rank's slice, so that with each rank computing its share of a global loss (e.g.
    contrastive loss of its own rows against the gathered batch) and DDP averaging, the
    gradients equal those of the loss on the concatenated batch. Ranks may hold
    different numbers of rows (same trailing shape). Identity without a process group.

    Example:
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> all_gather_with_grad(x) is x  # single process
        True
    """
    if not is_distributed():
        return t
    return cast(Tensor, _GatherWithGrad.apply(t))


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over all ranks, as a new tensor (no gradient); ``t`` itself in a single process.

    Integer tensors are averaged in floating point. Meant for logging metrics and losses.

    Example:
        >>> all_reduce_mean(torch.tensor(2.0))
        tensor(2.)
    """
    if not is_distributed():
        return t
    out = t.detach().clone()
    if not (out.is_floating_point() or out.is_complex()):
        out = out.double()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def _fully_shard() -> Any:
    fully_shard = getattr(importlib.import_module("torch.distributed.fsdp"), "fully_shard", None)
    if fully_shard is None:  # pragma: no cover - torch 2.4/2.5
        fully_shard = importlib.import_module("torch.distributed._composable.fsdp").fully_shard
    return fully_shard


def wrap_model(
    module: nn.Module,
    ctx: DistributedContext,
    strategy: Literal["none", "ddp", "fsdp"],
) -> nn.Module:
    """Move ``module`` to ``ctx.device`` and wrap it for data-parallel training.

    ``"ddp"``: ``DistributedDataParallel`` (``device_ids`` set only on CUDA). ``"fsdp"``:
    FSDP2, ``fully_shard`` applied to the root module in place (parameters become
    sharded ``DTensor``s; apply ``fully_shard`` to sub-blocks yourself beforehand for
    finer sharding). ``"none"``, or a single process, returns the moved module unwrapped.

    Example:
        >>> ctx = init_distributed("cpu")
        >>> net = torch.nn.Linear(2, 2)
        >>> wrap_model(net, ctx, "ddp") is net  # single process: nothing to wrap
        True
    """
    if strategy not in ("none", "ddp", "fsdp"):
        raise ValueError(f"unknown strategy {strategy!r}; expected 'none', 'ddp' or 'fsdp'")
    module = module.to(ctx.device)
    if strategy == "none" or not ctx.is_distributed:
        return module
    if strategy == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
    return cast(nn.Module, _fully_shard()(module))


def distributed_sampler(
    dataset: Dataset[Any],
    ctx: DistributedContext,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
) -> Sampler[int] | None:
    """A ``DistributedSampler`` for this rank, or ``None`` in a single process.

    Remember ``sampler.set_epoch(epoch)`` each epoch; with ``None``, pass ``shuffle`` to
    the ``DataLoader`` instead.

    Example:
        >>> distributed_sampler(list(range(10)), init_distributed("cpu"), shuffle=True) is None
        True
    """
    if not ctx.is_distributed:
        return None
    return DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
