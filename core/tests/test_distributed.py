import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ssl_core._distributed import (
    DistributedContext,
    all_gather_with_grad,
    all_reduce_mean,
    cleanup_distributed,
    distributed_sampler,
    init_distributed,
    is_main_process,
    wrap_model,
)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.usefixtures("no_torchrun_env")
def test_single_process_context_and_no_ops() -> None:
    ctx = init_distributed("cpu")
    assert ctx == DistributedContext(0, 0, 1, torch.device("cpu"), None, True)
    assert not ctx.is_distributed and is_main_process()
    assert not torch.distributed.is_initialized()
    x = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert all_reduce_mean(x) is x
    net = nn.Linear(2, 2)
    assert wrap_model(net, ctx, "ddp") is net and wrap_model(net, ctx, "fsdp") is net
    assert distributed_sampler(list(range(10)), ctx, shuffle=True, seed=0, drop_last=False) is None
    cleanup_distributed()  # nothing to clean up: must not fail


def test_world_size_one_creates_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    ctx = init_distributed(None)
    assert ctx.world_size == 1 and ctx.backend is None and not torch.distributed.is_initialized()


@pytest.mark.usefixtures("no_torchrun_env")
def test_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = init_distributed("cpu")
    with pytest.raises(ValueError, match="unknown strategy"):
        wrap_model(nn.Linear(2, 2), ctx, "zero3")  # type: ignore[arg-type]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT not set"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK='one'"):
        init_distributed("cpu")


# Runs in each of two processes, started the way torchrun starts them (environment variables).
_GATHER_WORKER = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DistributedSampler

    from ssl_core._distributed import (
        all_gather_with_grad, all_reduce_mean, cleanup_distributed, distributed_sampler, init_distributed,
        is_main_process, wrap_model,
    )

    ctx = init_distributed("cpu")
    rank, world = ctx.rank, ctx.world_size
    assert (world, ctx.backend, ctx.device.type) == (2, "gloo", "cpu"), ctx
    assert ctx.is_main == (rank == 0) == is_main_process()


    def contrastive_rows(queries, keys, offset):
        # InfoNCE-like: each query row against every key, its positive being its own row of keys
        positives = keys[offset : offset + len(queries)]
        return (torch.logsumexp(queries @ keys.T / 0.5, dim=1) - (queries * positives).sum(1) / 0.5).sum()


    # The same global batch on every rank; ranks own uneven slices of it.
    sizes = [3, 5]
    full = torch.randn(sum(sizes), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    start = sum(sizes[:rank])
    mine = slice(start, start + sizes[rank])

    # Reference: one process, loss summed over all rows of the concatenated batch.
    ref_x = full.clone().requires_grad_(True)
    contrastive_rows(ref_x, ref_x, 0).backward()

    # Distributed: each rank computes the loss of its own rows against the gathered keys.
    x = full[mine].clone().requires_grad_(True)
    gathered = all_gather_with_grad(x)
    assert torch.equal(gathered.detach(), full), "gathered values differ from the concatenated batch"
    contrastive_rows(x, gathered, start).backward()
    torch.testing.assert_close(x.grad, ref_x.grad[mine])

    # Every rank computing the full loss / world size also gives the single-process gradient.
    ref_y = full.clone().requires_grad_(True)
    (ref_y.sin() @ ref_y.T).pow(2).mean().backward()
    y = full[mine].clone().requires_grad_(True)
    g = all_gather_with_grad(y)
    ((g.sin() @ g.T).pow(2).mean() / world).backward()
    torch.testing.assert_close(y.grad, ref_y.grad[mine])

    # all_reduce_mean
    t = torch.tensor([rank + 1.0, 10.0 * rank])
    torch.testing.assert_close(all_reduce_mean(t), torch.tensor([1.5, 5.0]))
    assert t.tolist() == [rank + 1.0, 10.0 * rank], "input must not be modified"
    torch.testing.assert_close(all_reduce_mean(torch.tensor(rank)), torch.tensor(0.5, dtype=torch.float64))

    # distributed_sampler: disjoint shards covering the dataset
    sampler = distributed_sampler(list(range(10)), ctx, shuffle=True, seed=3, drop_last=False)
    assert isinstance(sampler, DistributedSampler)
    shards = [None] * world
    dist.all_gather_object(shards, list(sampler))
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(10))

    cleanup_distributed()
    assert not dist.is_initialized()
    print(f"rank {rank} ok")
    """
)


_WRAP_WORKER = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from torch import nn

    from ssl_core._distributed import cleanup_distributed, init_distributed, wrap_model

    ctx = init_distributed("cpu")
    rank, world = ctx.rank, ctx.world_size
    full = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    mine = slice(4 * rank, 4 * rank + 4)

    # DDP averages gradients across ranks
    torch.manual_seed(0)
    ddp = wrap_model(nn.Linear(4, 1), ctx, "ddp")
    assert isinstance(ddp, nn.parallel.DistributedDataParallel)
    ddp(full[mine]).sum().backward()
    grads = [torch.zeros_like(ddp.module.weight.grad) for _ in range(world)]
    dist.all_gather(grads, ddp.module.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], full.sum(0, keepdim=True) / world)

    # FSDP2 shards parameters; the reduced gradient matches the single-process mean
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    torch.manual_seed(0)
    sharded = wrap_model(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), ctx, "fsdp")
    assert type(sharded[0].weight).__name__ == "DTensor"
    sharded(full[mine]).sum().backward()
    (reference(full).sum() / world).backward()
    torch.testing.assert_close(sharded[0].weight.grad.full_tensor(), reference[0].weight.grad)

    cleanup_distributed()
    print(f"rank {rank} ok", flush=True)
    # skip interpreter teardown: after FSDP, a gloo thread sometimes aborts it ("terminate called
    # without an active exception", seen once in CI after "rank 1 ok"); the checks above are done
    import os
    os._exit(0)
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_two_ranks(tmp_path: Path, code: str) -> None:
    """Start ``code`` in two processes with the environment torchrun would give them."""
    script = tmp_path / "worker.py"
    script.write_text(code)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            CUDA_VISIBLE_DEVICES="",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=180)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out}"
        assert f"rank {rank} ok" in out


def test_two_gloo_processes_gather_and_reduce(tmp_path: Path) -> None:
    _run_two_ranks(tmp_path, _GATHER_WORKER)


@pytest.mark.slow  # DDP and FSDP import torch._dynamo in each process: ~10 s of CPU on top of the gather test
def test_two_gloo_processes_ddp_and_fsdp(tmp_path: Path) -> None:
    _run_two_ranks(tmp_path, _WRAP_WORKER)
