"""The training loop: learning, NaN handling, exact resume after a kill, DDP equivalence."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import NonFiniteLossError, Registry

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 64, "embed_dim": 32},
    "views": {"name": "core.noise", "image_shape": [8, 8], "max_shift": 1},
    "objective": {"name": "core.simclr", "hidden_dim": 64, "proj_dim": 32},
    "train": {"steps": 10, "batch_size": 64, "lr": 3e-3, "log_every": 1, "progress": False, "checkpoint_every": 1},
    "plots": False,
    "compare_random_init": False,
}

SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def losses(log: Path) -> list[float]:
    with log.open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_loss_decreases_and_files_are_written(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = {
        **TINY,
        "train": {**TINY["train"], "steps": 40, "log_every": 5},
        "plots": True,
        "evaluate": [{"name": "core.knn", "k": [10]}],
    }
    result = ssl_core.run(cfg, out=tmp_path)
    history = losses(tmp_path / "log.csv")
    assert history[-1] < history[0] - 0.2  # noise between steps is ~0.05
    for name in ("config.toml", "metrics.json", "log.csv", "loss.png", "embeddings.png"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"evaluations", "train", "environment"}
    assert metrics["train"]["steps"] == 40 and metrics["train"]["samples_per_second"] > 0
    assert 0.5 < metrics["evaluations"]["core.knn"]["knn_top1@10"] <= 1.0
    assert result.metrics == metrics | {"plots": metrics["plots"]}
    # the resolved config round-trips through `ssl run`'s own loader
    assert ssl_core.load_config(tmp_path / "config.toml").train.steps == 40


class _ExplodingObjective(torch.nn.Module):
    requires_tokens = False

    def __init__(self, embed_dim: int, explode_at: int = 4) -> None:
        super().__init__()
        self.head = torch.nn.Linear(embed_dim, 8)
        self.calls, self.explode_at = 0, explode_at

    def forward(self, encoder: torch.nn.Module, views: ssl_core.Views) -> dict[str, torch.Tensor]:
        self.calls += 1
        loss = self.head(encoder(views.batches[0]).pooled).pow(2).mean()
        return {"loss": loss * float("nan") if self.calls >= self.explode_at else loss}


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    registry = Registry()
    registry.register("objective", "test.exploding", _ExplodingObjective)
    cfg = {**TINY, "objective": {"name": "test.exploding"}}
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 4") as info:
        ssl_core.run(cfg, out=tmp_path, registry=registry)
    assert info.value.checkpoint is not None and info.value.checkpoint.endswith("step-000003.pt")
    state = ssl_core.load_checkpoint(info.value.checkpoint, weights_only=False)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


KILL_SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import ssl_core
from ssl_core._hooks import make_plugin_manager

cfg = json.loads(sys.argv[1])
out, mode = sys.argv[2], sys.argv[3]

class KillAtFive:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step, metrics):
        if step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

pm = make_plugin_manager(load_entry_points=False)
if mode == "kill":
    pm.register(KillAtFive())
ssl_core.run(cfg, out=out, resume=(mode == "resume"), hooks=pm)
"""


def _script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_kill_and_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    script = _script(tmp_path, KILL_SCRIPT)
    cfg = json.dumps(TINY)

    def run(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), cfg, str(out), mode],
            capture_output=True,
            text=True,
            env=SCRIPT_ENV,
            timeout=300,
        )

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert run(straight, "full").returncode == 0
    killed = run(interrupted, "kill")
    assert killed.returncode == -9, killed.stderr  # really killed, mid-run
    assert ssl_core.load_checkpoint(interrupted / "checkpoints" / "step-000005.pt")["step"] == 5
    assert not (interrupted / "checkpoints" / "step-000006.pt").exists()
    resumed = run(interrupted, "resume")
    assert resumed.returncode == 0, resumed.stderr

    assert losses(straight / "log.csv") == losses(interrupted / "log.csv")  # exact, all 10 steps
    a = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000010.pt", weights_only=False)
    b = ssl_core.load_checkpoint(interrupted / "checkpoints" / "step-000010.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=False):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


DDP_SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
import ssl_core

cfg = json.loads(sys.argv[1])
result = ssl_core.run(cfg)
if int(os.environ.get("RANK", "0")) == 0:
    rows = [{"step": r["step"], "loss": r["loss"]} for r in result.history]
    params = {k: v.tolist() for k, v in result.encoder.state_dict().items()}
    json.dump({"rows": rows, "params": params, "world": result.metrics["train"]["world_size"]},
              open(sys.argv[2], "w"))
"""


def test_ddp_two_processes_match_one_process(tmp_path: Path) -> None:
    if shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists():
        pytest.skip("torchrun is not installed next to this Python")
    cfg = {
        **TINY,
        "views": {"name": "core.noise", "noise_std": 0.0, "drop_prob": 0.0},
        "train": {**TINY["train"], "steps": 6, "checkpoint_every": 0},
    }
    script = _script(tmp_path, DDP_SCRIPT)
    args = [str(script), json.dumps({**cfg, "compare_random_init": False}), ""]
    single, double = tmp_path / "single.json", tmp_path / "ddp.json"
    one = subprocess.run(
        [sys.executable, *args[:2], str(single)], capture_output=True, text=True, env=SCRIPT_ENV, timeout=300
    )
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(
        [*torchrun, *args[:2], str(double)], capture_output=True, text=True, env=SCRIPT_ENV, timeout=300
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(single.read_text()), json.loads(double.read_text())
    assert a["world"] == 1 and b["world"] == 2
    assert [r["step"] for r in a["rows"]] == [r["step"] for r in b["rows"]]
    for ra, rb in zip(a["rows"], b["rows"], strict=False):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6)
    for key in a["params"]:
        assert torch.allclose(torch.tensor(a["params"][key]), torch.tensor(b["params"][key]), atol=1e-5), key


def test_bf16_autocast_accumulation_and_clipping_train(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = {
        **TINY,
        "train": {
            **TINY["train"],
            "steps": 6,
            "precision": "bf16",
            "accumulate": 2,
            "grad_clip": 0.5,
            "checkpoint_every": 0,
            "weight_decay": 0.04,
            "weight_decay_end": 0.4,
        },
    }
    result = ssl_core.run(cfg, out=tmp_path)
    rows = result.history
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert all(r["grad_norm"] > 0 for r in rows)  # norm before clipping is logged
    assert result.metrics["train"]["precision"] == "bf16"
    # each optimizer step consumed two micro-batches of 64
    assert result.metrics["train"]["steps"] == 6
    assert rows[-1]["epoch"] == (6 * 2 * 64) // 1257
    decays = [r["weight_decay"] for r in rows]
    assert decays[0] == pytest.approx(0.04) and decays == sorted(decays) and decays[-1] < 0.4


@pytest.mark.slow
def test_compiled_encoder_trains_like_eager(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train = {**TINY["train"], "steps": 3, "checkpoint_every": 0}
    eager = ssl_core.run({**TINY, "train": train})
    compiled = ssl_core.run({**TINY, "train": {**train, "compile": True}}, out=tmp_path)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    # compiling in place keeps the checkpoint's parameter names loadable into a plain encoder
    state = ssl_core.load_checkpoint(tmp_path / "checkpoints" / "step-000003.pt", weights_only=False)
    assert all("_orig_mod" not in key for key in state["encoder"])


def test_optimizer_choices_and_weight_decay_groups() -> None:
    from ssl_core._config import TrainConfig
    from ssl_core._train import _make_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    adam = _make_optimizer(model, TrainConfig(optimizer="adam", weight_decay=0.1))
    assert type(adam) is torch.optim.Adam
    decayed, exempt = adam.param_groups
    assert [p.ndim for p in decayed["params"]] == [2] and exempt["weight_decay"] == 0.0  # biases and norms exempt
    everything = _make_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.1, decay_bias_and_norm=True))
    assert len(everything.param_groups) == 1 and len(everything.param_groups[0]["params"]) == 4
    with pytest.raises(ssl_core.ConfigError, match="'adamw', 'adam' or 'sgd'"):
        _make_optimizer(model, TrainConfig(optimizer="lamb"))  # type: ignore[arg-type]


def test_a_separate_pretrain_split_is_what_training_iterates(tmp_path: Path) -> None:
    """DatasetSplits.pretrain (e.g. neighbour-sampled subgraphs) feeds training; evaluators keep train/test."""
    from ssl_core import DatasetSplits
    from ssl_core._components import digits

    seen: list[int] = []

    def provider(root: str | None = None) -> DatasetSplits:
        base = digits()

        def pretrain_collate(samples: list[Any]) -> dict[str, Any]:
            seen.append(len(samples))
            return base.collate(samples)

        base.pretrain = [base.train[i] for i in range(128)]  # type: ignore[assignment]
        base.pretrain_collate = pretrain_collate
        return base

    registry = Registry(discover=False)
    cfg = {
        **TINY,
        "data": {"name": "test.pretrain_split"},
        "train": {**TINY["train"], "steps": 3, "checkpoint_every": 0},
    }
    registry.register("dataset", "test.pretrain_split", provider)
    for kind, name in (("encoder", "core.mlp"), ("views", "core.noise"), ("objective", "core.simclr")):
        registry.register(kind, name, ssl_core.default_registry().get(kind, name))
    ssl_core.run(cfg, registry=registry)
    assert seen == [64, 64, 64]  # 128 pretrain samples, batch 64: two batches per epoch, then a new epoch


def test_datasets_with_lengths_train_and_evaluate_in_length_buckets(tmp_path: Path) -> None:
    """A dataset offering lengths() gets batches of similar lengths, in a seeded order (resume replays it)."""
    from ssl_core import DatasetSplits
    from ssl_core._components import digits
    from ssl_core._train import _EpochBatches, dataset_lengths

    class WithLengths(list):  # type: ignore[type-arg]
        def lengths(self) -> list[int]:
            return [(i * 37) % 101 for i in range(len(self))]

    seen: list[list[int]] = []

    def provider(root: str | None = None) -> DatasetSplits:
        base = digits()
        train = WithLengths(base.train[i] for i in range(256))
        lengths = train.lengths()
        position = {id(sample[0]): i for i, sample in enumerate(train)}

        def collate(samples: list[Any]) -> dict[str, Any]:
            seen.append([lengths[position[id(s[0])]] for s in samples])
            return base.collate(samples)

        return DatasetSplits(
            train=train, test=base.test, collate=collate, modality="vector", num_classes=10, info=base.info
        )

    registry = Registry(discover=False)
    registry.register("dataset", "test.lengths", provider)
    for kind, name in (("encoder", "core.mlp"), ("views", "core.noise"), ("objective", "core.simclr")):
        registry.register(kind, name, ssl_core.default_registry().get(kind, name))
    cfg = {**TINY, "data": {"name": "test.lengths"}, "train": {**TINY["train"], "steps": 4, "checkpoint_every": 0}}
    ssl_core.run(cfg, registry=registry)
    assert len(seen) == 4 and all(max(b) - min(b) <= 30 for b in seen)  # 64 of 256 lengths in 0..100: one bucket
    assert len({tuple(b) for b in seen}) == 4  # four different buckets of the epoch, in shuffled order

    ctx = ssl_core.init_distributed("cpu")
    lengths = dataset_lengths(WithLengths(range(256)))
    first = _EpochBatches(256, 64, ctx, seed=5, lengths=lengths)
    again = _EpochBatches(256, 64, ctx, seed=5, lengths=lengths)
    assert (
        first.per_epoch == 4
        and first.batches(1) == again.batches(1)
        and first.batches(1, skip=2) == again.batches(1)[2:]
    )
    assert first.batches(0) != first.batches(1)  # a new order every epoch
    assert dataset_lengths([1, 2, 3]) is None
    from ssl_core._evaluate import eval_loader as _loader

    splits = provider()
    seen.clear()
    list(_loader(splits.train, splits, batch_size=100))
    assert [len(b) for b in seen] == [100, 100, 56] and seen[0] + seen[1] + seen[2] == sorted(
        seen[0] + seen[1] + seen[2]
    )
