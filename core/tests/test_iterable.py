"""Iterable sources (issue 15): StatefulDataLoader positions in checkpoints, exact resume with workers, DDP ends."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core

pytest.importorskip("torchdata", reason="iterable sources need torchdata (pip install 'ssl-core[stream]')")

SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

SOURCE = '''
import os
import torch
import torch.distributed as dist
from ssl_core import DatasetSplits, SkippedItem, sample_generator
from ssl_core._components import digits


class JitteredStream(torch.utils.data.IterableDataset):
    """Digits streamed in a per-epoch order, split by rank then by worker, with a per-item jitter."""

    decodes_lazily = True

    def __init__(self, x, y, broken=(), short_rank=None):
        self.x, self.y, self.broken, self.short_rank, self.epoch = x, y, set(broken), short_rank, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(11 + self.epoch)).tolist()
        share = order[rank::world]
        if rank == self.short_rank:  # an uneven last shard: this rank runs out 200 samples early
            share = share[:-200]
        seen = os.environ.get("SEEN_DIR")
        for index in share[worker::workers]:
            if seen:
                with open(os.path.join(seen, f"{os.getpid()}.txt"), "a") as f:
                    f.write(f"{self.epoch} {index}\\n")
            if index in self.broken:
                yield SkippedItem(f"item-{index}.wav", "truncated")
                continue
            noise = torch.randn(self.x.shape[1], generator=sample_generator(7, self.epoch, index))
            yield self.x[index] + 0.1 * noise, self.y[index]


def collate(items):
    return {"x": torch.stack([x for x, _ in items]), "y": torch.stack([y for _, y in items])}


def streamed_digits(root=None, broken=(), short_rank=None):
    base = digits()
    x, y = base.train.tensors
    train = JitteredStream(x, y, broken, short_rank)
    return DatasetSplits(train, base.test, collate, "vector", base.num_classes, dict(base.info))
'''

PIPELINE: dict[str, Any] = {
    "name": "iterable",
    "seed": 3,
    "data": {"name": "test.stream"},
    "encoder": {"name": "core.mlp", "hidden_dim": 32, "embed_dim": 16},
    "views": {"name": "core.noise"},
    "objective": {"name": "core.simclr", "hidden_dim": 32, "proj_dim": 16},
    "train": {"steps": 10, "batch_size": 32, "log_every": 1, "progress": False, "checkpoint_every": 1},
    "evaluate": [],
    "plots": False,
    "compare_random_init": False,
}

SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[4])
import ssl_core
import stream_data

registry = ssl_core.Registry()
registry.register("dataset", "test.stream", stream_data.streamed_digits)

class KillAtFive:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
if sys.argv[3] == "kill":
    hooks.register(KillAtFive())
out = None if sys.argv[2] == "-" else sys.argv[2]
ssl_core.run(json.loads(sys.argv[1]), out=out, resume=sys.argv[3] == "resume", hooks=hooks, registry=registry)
"""


def _script(tmp_path: Path) -> Path:
    (tmp_path / "stream_data.py").write_text(SOURCE)
    script = tmp_path / "stream_script.py"
    script.write_text(SCRIPT)
    return script


def test_kill_mid_epoch_with_two_workers_then_resume_is_exact(tmp_path: Path) -> None:
    script = _script(tmp_path)
    pipeline = json.dumps({**PIPELINE, "train": {**PIPELINE["train"], "num_workers": 2}})

    def launch(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), pipeline, str(out), mode, str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, env=SCRIPT_ENV, timeout=300)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    full = launch(straight, "full")
    assert full.returncode == 0, full.stderr[-2000:]
    assert launch(killed, "kill").returncode == -9
    state = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000005.pt", weights_only=False)
    assert state["epoch"] == 0 and state["batch_in_epoch"] == 5 and state["loader_state"] is not None
    resumed = launch(killed, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with (straight / "log.csv").open() as a, (killed / "log.csv").open() as b:
        losses = [r["loss"] for r in csv.DictReader(a)]
        assert len(losses) == 10 and losses == [r["loss"] for r in csv.DictReader(b)]
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000010.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000010.pt", weights_only=False)["model"]
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_skipped_items_of_an_iterable_source_are_counted(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "stream_data_skips.py").write_text(SOURCE)
    import stream_data_skips  # type: ignore[import-not-found]

    registry = ssl_core.Registry()
    registry.register("dataset", "test.stream", stream_data_skips.streamed_digits)
    pipeline = {**PIPELINE, "data": {"name": "test.stream", "broken": list(range(0, 1257, 3))}}
    pipeline["train"] = {**PIPELINE["train"], "steps": 45, "checkpoint_every": 0}  # past one epoch (27 batches)
    with pytest.warns(UserWarning, match=r"skipped an item the dataset could not read: item-\d+\.wav \(truncated\)"):
        result = ssl_core.run(pipeline, registry=registry, out=tmp_path / "run")
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_training"] > 419 and data["dropped_batches"] == 0  # a full epoch holds 419 broken
    assert result.metrics["train"]["steps"] == 45


@pytest.mark.parametrize("short_rank", [None, 1])
def test_two_process_ddp_over_an_iterable_source_ends_epochs_together(tmp_path: Path, short_rank: int | None) -> None:
    script = _script(tmp_path)
    seen_dir = tmp_path / "seen"
    seen_dir.mkdir()
    # 1257 samples, 629 + 628 per rank, batch 32 per rank: 20 batches on each rank (the last one partial)
    train = {**PIPELINE["train"], "steps": 25, "num_workers": 2, "drop_last": False, "checkpoint_every": 0}
    data = {"name": "test.stream", **({"short_rank": short_rank} if short_rank is not None else {})}
    pipeline = {**PIPELINE, "data": data, "train": {**train, "batch_size": 64}}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launcher, str(script), json.dumps(pipeline), str(tmp_path / "run"), "full", str(tmp_path)],
        capture_output=True, text=True, env={**SCRIPT_ENV, "SEEN_DIR": str(seen_dir)}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    first_epoch = sorted(
        int(index) for f in seen_dir.iterdir() for epoch, index in (line.split() for line in f.read_text().splitlines())
        if epoch == "0"
    )  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    if short_rank is None:
        assert first_epoch == list(range(1257))  # the union is the dataset, each sample once
        assert metrics["data"]["dropped_batches"] == 0
    else:  # rank 1 ran out 200 samples (7 batches) early: the epoch ended there for both, nobody hung
        assert len(first_epoch) == len(set(first_epoch)) and metrics["train"]["steps"] == 25
        assert metrics["data"]["dropped_batches"] >= 1
