"""Datasets that decode in DataLoader workers: per-item randomness, skipped items, exact mid-epoch resume."""

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
from ssl_core import DatasetSplits, Registry, SkippedItem, sample_generator

SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

DATASET_SOURCE = '''
import torch
from ssl_core import DatasetSplits, SkippedItem, sample_generator
from ssl_core._components import digits


class Jittered(torch.utils.data.Dataset):
    """Digits "decoded" on access with a per-item random jitter, as an audio crop would be."""

    decodes_lazily = True

    def __init__(self, x, y, broken=()):
        self.x, self.y, self.broken, self.epoch = x, y, set(broken), 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        if index in self.broken:
            return SkippedItem(f"item-{index}.wav", "truncated")
        noise = torch.randn(self.x.shape[1], generator=sample_generator(7, self.epoch, index))
        return self.x[index] + 0.1 * noise, self.y[index]


def collate(items):
    return {"x": torch.stack([x for x, _ in items]), "y": torch.stack([y for _, y in items])}


def jittered_digits(root=None, broken=()):
    base = digits()
    x, y = base.train.tensors
    return DatasetSplits(Jittered(x, y, broken), base.test, collate, "vector", base.num_classes, dict(base.info))
'''

PIPELINE: dict[str, Any] = {
    "name": "streamed",
    "seed": 3,
    "data": {"name": "test.jittered"},
    "encoder": {"name": "core.mlp", "hidden_dim": 32, "embed_dim": 16},
    "views": {"name": "core.noise"},
    "objective": {"name": "core.simclr", "hidden_dim": 32, "proj_dim": 16},
    "train": {"steps": 10, "batch_size": 32, "log_every": 1, "progress": False, "checkpoint_every": 1},
    "plots": False,
    "compare_random_init": False,
}


def _registry(tmp_path: Path) -> Registry:
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "jittered_data.py").write_text(DATASET_SOURCE)
    import jittered_data  # type: ignore[import-not-found]

    registry = Registry()
    registry.register("dataset", "test.jittered", jittered_data.jittered_digits)
    return registry


def test_sample_generator_depends_on_seed_epoch_and_index_only() -> None:
    def draw(*key: int) -> list[float]:
        return torch.rand(3, generator=sample_generator(*key)).tolist()

    assert draw(0, 1, 2) == draw(0, 1, 2)
    assert len({tuple(draw(0, 1, 2)), tuple(draw(1, 1, 2)), tuple(draw(0, 2, 2)), tuple(draw(0, 1, 3))}) == 4


def test_skipped_items_are_named_counted_and_training_goes_on(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    registry = _registry(tmp_path)
    pipeline = {**PIPELINE, "data": {"name": "test.jittered", "broken": [0, 1, 2]}}
    pipeline["train"] = {**PIPELINE["train"], "steps": 60, "num_workers": 0, "checkpoint_every": 0}
    with pytest.warns(UserWarning, match=r"skipped an item the dataset could not read: item-\d\.wav \(truncated\)"):
        result = ssl_core.run(pipeline, out=tmp_path / "run", registry=registry)
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_training"] >= 3  # each epoch meets them again
    assert data["skipped_names"] == ["item-0.wav (truncated)", "item-1.wav (truncated)", "item-2.wav (truncated)"]
    assert result.metrics["train"]["steps"] == 60


def test_lazy_datasets_get_workers_unless_told_otherwise() -> None:
    from ssl_core._streaming import resolve_num_workers

    class Lazy:
        decodes_lazily = True

    assert resolve_num_workers(None, Lazy()) >= 1
    assert resolve_num_workers(0, Lazy()) == 0
    assert resolve_num_workers(None, DatasetSplits([], [], list, "vector").train) == 0


KILL_SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[4])
import ssl_core
import jittered_data

registry = ssl_core.Registry()
registry.register("dataset", "test.jittered", jittered_data.jittered_digits)

class KillAtFive:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
if sys.argv[3] == "kill":
    hooks.register(KillAtFive())
ssl_core.run(json.loads(sys.argv[1]), out=sys.argv[2], resume=sys.argv[3] == "resume", hooks=hooks, registry=registry)
"""


def test_kill_mid_epoch_with_two_workers_then_resume_is_exact(tmp_path: Path) -> None:
    (tmp_path / "jittered_data.py").write_text(DATASET_SOURCE)
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    pipeline = json.dumps({**PIPELINE, "train": {**PIPELINE["train"], "num_workers": 2}})

    def launch(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), pipeline, str(out), mode, str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, env=SCRIPT_ENV, timeout=300)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert launch(straight, "full").returncode == 0
    assert launch(killed, "kill").returncode == -9
    state = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000005.pt", weights_only=False)
    assert state["epoch"] == 0 and 0 < state["batch_in_epoch"] < 1257 // 32  # really mid-epoch
    resumed = launch(killed, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with (straight / "log.csv").open() as a, (killed / "log.csv").open() as b:
        assert [r["loss"] for r in csv.DictReader(a)] == [r["loss"] for r in csv.DictReader(b)]
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000010.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000010.pt", weights_only=False)["model"]
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_skipped_item_text() -> None:
    assert str(SkippedItem("a.wav")) == "a.wav" and str(SkippedItem("a.wav", "empty")) == "a.wav (empty)"


def test_each_split_is_embedded_once_for_all_evaluators() -> None:
    from ssl_core import KNNEvaluator, LinearProbeEvaluator, evaluate
    from ssl_core._components import MLPEncoder, digits

    splits = digits()
    encoder = MLPEncoder(in_dim=64, hidden_dim=16, embed_dim=8)
    seen: list[int] = []
    encoder.register_forward_hook(lambda module, args, output: seen.append(len(args[0]["x"])))
    evaluators = {"knn": KNNEvaluator(k=[5]), "probe": LinearProbeEvaluator(epochs=5)}
    evaluate(encoder, splits, evaluators, batch_size=256)
    assert sum(seen) == len(splits.train) + len(splits.test)  # not twice, although two evaluators ran


@pytest.mark.parametrize(("size", "batch"), [(101, 8), (1257, 64), (65, 32)])
def test_without_drop_last_every_sample_is_seen_once_per_epoch_on_two_ranks(size: int, batch: int) -> None:
    from ssl_core import DistributedContext
    from ssl_core._train import _EpochBatches

    ranks = [DistributedContext(r, r, 2, torch.device("cpu"), "gloo", r == 0) for r in (0, 1)]
    shards = [_EpochBatches(size, batch // 2, ctx, seed=4, drop_last=False).batches(epoch=1) for ctx in ranks]
    assert len(shards[0]) == len(shards[1])  # the same number of steps on every rank: nobody waits forever
    assert all(len(b) >= 1 for shard in shards for b in shard)
    seen = [i for shard in shards for b in shard for i in b]
    assert sorted(seen) == list(range(size))  # each sample exactly once
    resumed = _EpochBatches(size, batch // 2, ranks[1], seed=4, drop_last=False).batches(epoch=1, skip=2)
    assert resumed == shards[1][2:]


RECORDING_SOURCE = (
    DATASET_SOURCE
    + '''

import os


class Recording(Jittered):
    """Appends every index it decodes (and the epoch) to a file per process."""

    def __getitem__(self, index):
        with open(os.path.join(os.environ["SEEN_DIR"], f"{os.getpid()}.txt"), "a") as seen:
            seen.write(f"{self.epoch} {index}\\n")
        return super().__getitem__(index)


def recording_digits(root=None):
    base = jittered_digits()
    train = Recording(base.train.x, base.train.y)
    return DatasetSplits(train, base.test, collate, "vector", base.num_classes, dict(base.info))
'''
)

DDP_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
import ssl_core
import recording_data

registry = ssl_core.Registry()
registry.register("dataset", "test.recording", recording_data.recording_digits)
ssl_core.run(json.loads(sys.argv[1]), registry=registry)
"""


def test_two_process_ddp_over_a_streamed_dataset_sees_each_sample_once(tmp_path: Path) -> None:
    (tmp_path / "recording_data.py").write_text(RECORDING_SOURCE)
    script = tmp_path / "ddp_script.py"
    script.write_text(DDP_SCRIPT)
    seen_dir = tmp_path / "seen"
    seen_dir.mkdir()
    # 1257 samples, global batch 64: 20 steps are one epoch, whose last batch is 41 (21 + 20 per rank)
    train = {**PIPELINE["train"], "steps": 20, "num_workers": 2, "drop_last": False, "checkpoint_every": 0}
    pipeline = {**PIPELINE, "data": {"name": "test.recording"}, "train": {**train, "batch_size": 64}, "evaluate": []}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launcher, str(script), json.dumps(pipeline), str(tmp_path)],
        capture_output=True, text=True, env={**SCRIPT_ENV, "SEEN_DIR": str(seen_dir)}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    indices = [int(line.split()[1]) for f in seen_dir.iterdir() for line in f.read_text().splitlines()]
    assert len(list(seen_dir.iterdir())) >= 4  # two workers on each of two ranks decoded
    assert sorted(indices) == list(range(1257))  # the union is the dataset, each sample once
