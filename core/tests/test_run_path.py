"""The one run path: existing runs are not overwritten, recipes take arguments, top-level keys are typed,
hooks come from discovery, and a staged pipeline under torchrun evaluates and writes once, on rank 0."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import ConfigError, Registry, cli_main

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 32, "embed_dim": 16},
    "views": {"name": "core.noise", "noise_std": 0.0, "drop_prob": 0.0},
    "objective": {"name": "core.simclr", "hidden_dim": 32, "proj_dim": 16},
    "train": {"steps": 3, "batch_size": 64, "lr": 3e-3, "log_every": 1, "progress": False},
    "plots": False,
    "compare_random_init": False,
}
SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_an_existing_run_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    pipeline = tmp_path / "tiny.toml"
    pipeline.write_text(
        textwrap.dedent("""
        seed = 3
        plots = false
        compare_random_init = false
        data = { name = "core.digits" }
        encoder = { name = "core.mlp", hidden_dim = 32, embed_dim = 16 }
        views = { name = "core.noise" }
        objective = { name = "core.simclr" }
        train = { steps = 2, batch_size = 64, progress = false }
        """)
    )
    out = tmp_path / "run"
    assert cli_main(["run", str(pipeline), "--out", str(out)]) == 0
    first = (out / "metrics.json").read_text()
    assert cli_main(["run", str(pipeline), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "already holds a run" in error and "--resume" in error and "--overwrite" in error
    assert (out / "metrics.json").read_text() == first  # nothing lost
    (out / "notes.txt").write_text("mine")
    assert cli_main(["run", str(pipeline), "--out", str(out), "--overwrite", "--set", "train.steps=3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003.pt"]
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert cli_main(["run", str(pipeline), "--out", str(out), "--resume", "--set", "train.steps=4"]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["run", str(pipeline), "--out", str(empty)]) == 0  # an empty folder is fine


def tiny_recipe(steps: int = 2, embed_dim: int = 16, lr: float = 3e-3) -> dict[str, Any]:
    """A recipe with arguments."""
    return {
        **TINY,
        "encoder": {**TINY["encoder"], "embed_dim": embed_dim},
        "train": {**TINY["train"], "steps": steps, "lr": lr},
    }


def test_recipes_take_arguments_from_python_toml_and_the_cli(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    registry = Registry()
    registry.register("recipe", "demo.tiny", tiny_recipe)
    result = ssl_core.run("demo.tiny", registry=registry, recipe_args={"steps": 4, "lr": 1})
    assert result.metrics["train"]["steps"] == 4 and result.config.train.lr == 1.0  # 1 -> 1.0
    with pytest.raises(ConfigError, match="has no parameter 'stpes'; did you mean 'steps'"):
        ssl_core.run("demo.tiny", registry=registry, recipe_args={"stpes": 4})
    with pytest.raises(ConfigError, match="must be an integer, got 'many'"):
        ssl_core.run("demo.tiny", registry=registry, recipe_args={"steps": "many"})
    # TOML form: the recipe's pipeline under the file's own tables
    file_form = {"recipe": {"name": "demo.tiny", "embed_dim": 8}, "train": {"steps": 1}}
    result = ssl_core.run(file_form, registry=registry, recipe_args={"lr": 0.01})
    assert result.encoder.embed_dim == 8 and result.config.train.steps == 1 and result.config.train.lr == 0.01
    with pytest.raises(ConfigError, match="--recipe arguments need a recipe"):
        ssl_core.run(TINY, recipe_args={"steps": 1})
    assert cli_main(["run", "core.quickstart", "--recipe", "steps=3", "--out", str(tmp_path / "x")]) == 2


def test_top_level_keys_are_type_checked() -> None:
    with pytest.raises(ConfigError, match="plots must be true or false, got 'false'"):
        ssl_core.load_config({**TINY, "plots": "false"})
    with pytest.raises(ConfigError, match="seed must be an integer"):
        ssl_core.load_config({**TINY, "seed": 1.5})


def test_warm_up_ratio_follows_the_run_length_and_wins_with_a_warning() -> None:
    cfg = ssl_core.load_config({**TINY, "train": {"warmup_ratio": 0.1}}, overrides=["train.steps=300"])
    assert cfg.train.total_warmup_steps() == 30
    with pytest.warns(UserWarning, match="warmup_steps=5 is ignored"):
        cfg = ssl_core.load_config({**TINY, "train": {"warmup_ratio": 0.1, "warmup_steps": 5, "steps": 50}})
    assert cfg.train.total_warmup_steps() == 5


HOOK = """
from ssl_core import hookimpl

@hookimpl
def ssl_on_train_start(config):
    print("HOOK CALLED")
"""


def _ssl(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "ssl_core", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_hooks_come_from_discovery(tmp_path: Path, fake_distribution: Callable[..., None]) -> None:
    fake_distribution(
        tmp_path,
        "ssl-old",
        entry_points={"ssl_core.plugins": {"old": "ssl_old"}, "ssl_core.hooks": {"old": "ssl_old"}},
        requires_core=">=2,<3",
        module="ssl_old",
        module_source=HOOK,
    )
    code = "import ssl_core; print(sorted(n for n, _ in ssl_core.make_plugin_manager().list_name_plugin()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert "old" not in out.stdout  # an incompatible plugin's hooks never see the run


def test_plugins_check_strict_fails_on_a_broken_hook_module(
    tmp_path: Path, fake_distribution: Callable[..., None]
) -> None:
    fake_distribution(
        tmp_path,
        "ssl-badhook",
        entry_points={"ssl_core.plugins": {"badhook": "ssl_badhook"}, "ssl_core.hooks": {"bad": "ssl_badhook"}},
        module="ssl_badhook",
        module_source="raise RuntimeError('boom')\n",
    )
    assert _ssl(tmp_path, "plugins", "--strict").returncode == 0  # listing imports nothing
    checked = _ssl(tmp_path, "plugins", "--check", "--strict")
    assert checked.returncode == 1
    assert "hook plugin 'bad' from ssl-badhook was skipped: RuntimeError: boom" in checked.stdout
    listed = json.loads(_ssl(tmp_path, "plugins", "--check", "--json").stdout)
    (bad,) = [p for p in listed["plugins"] if p["name"] == "ssl-badhook"]
    assert bad["status"] == "error"


STAGED_SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
import torch.distributed as dist
import ssl_core

pipeline, out, record = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
rank = os.environ.get("RANK", "0")
if "WORLD_SIZE" in os.environ:
    dist.init_process_group("gloo")  # the caller's own group: run() must reuse it and leave it open

class Record:
    @ssl_core.hookimpl
    def ssl_on_evaluate_end(self, evaluator):
        with open(record, "a") as f:
            f.write(f"{rank} {evaluator}\\n")

pm = ssl_core.make_plugin_manager(load_entry_points=False)
pm.register(Record())
result = ssl_core.run(pipeline, out=out, hooks=pm)
if "WORLD_SIZE" in os.environ:
    assert dist.is_initialized(), "run() destroyed the caller's process group"
    dist.barrier()
    dist.destroy_process_group()
"""


def _losses(stage_dir: Path) -> list[float]:
    with (stage_dir / "log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_staged_pipeline_under_torchrun_evaluates_once_and_matches_one_process(tmp_path: Path) -> None:
    pipeline = {
        **{k: v for k, v in TINY.items() if k != "objective"},
        "stage": [
            {"name": "first", "objective": TINY["objective"]},
            {"name": "probe", "kind": "evaluate", "evaluate": [{"name": "core.knn", "k": [5]}]},
            {"name": "second", "objective": TINY["objective"], "train": {"steps": 2}},
        ],
    }
    script = tmp_path / "staged.py"
    script.write_text(STAGED_SCRIPT)
    runs = {}
    for name, launcher in {
        "single": [sys.executable],
        "ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    }.items():
        out, record = tmp_path / name, tmp_path / f"{name}.txt"
        done = subprocess.run(
            [*launcher, str(script), json.dumps(pipeline), str(out), str(record)],
            capture_output=True,
            text=True,
            env=SCRIPT_ENV,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = out
        assert record.read_text().splitlines() == ["0 core.knn"]  # evaluated once, on rank 0
        stages = json.loads((out / "stages.json").read_text())["stages"]
        assert [s["name"] for s in stages] == ["first", "probe", "second"]
        assert stages[0]["metrics"]["train"]["world_size"] == (1 if name == "single" else 2)
    for stage in ("1-first", "3-second"):
        single, ddp = _losses(runs["single"] / stage), _losses(runs["ddp"] / stage)
        assert len(single) == len(ddp) > 0
        assert ddp == pytest.approx(single, rel=1e-5, abs=1e-6)


FAILING_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
import ssl_core

def broken(**params):
    def evaluate(encoder, train, test):
        raise RuntimeError("probe exploded")
    return evaluate

registry = ssl_core.Registry()
registry.register("evaluator", "test.broken", broken)
ssl_core.run(json.loads(sys.argv[1]), registry=registry)
"""


def test_an_error_on_rank_0_stops_every_rank(tmp_path: Path) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING_SCRIPT)
    pipeline = {**TINY, "train": {**TINY["train"], "steps": 1}, "evaluate": [{"name": "test.broken"}]}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launcher, str(script), json.dumps(pipeline)], capture_output=True, text=True, env=SCRIPT_ENV, timeout=240
    )
    assert done.returncode != 0
    assert "probe exploded" in done.stderr  # rank 0's own error
    assert "rank 0 failed, so rank 1 stops too: RuntimeError: probe exploded" in done.stderr  # nobody left waiting


def test_resume_from_a_checkpoint_without_history_reads_the_log(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pipeline = {**TINY, "train": {**TINY["train"], "checkpoint_every": 1}}
    ssl_core.run(pipeline, out=tmp_path)
    last = tmp_path / "checkpoints" / "step-000003.pt"
    state = ssl_core.load_checkpoint(last, weights_only=False)
    del state["history"]  # as written before TrainState kept it
    ssl_core.save_checkpoint(last, state)
    resumed = ssl_core.run(pipeline, out=tmp_path, resume=True, overrides=["train.steps=5"])
    assert [row["step"] for row in resumed.history] == [1, 2, 3, 4, 5]


SIGNAL_SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import ssl_core

pipeline, out, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

class SignalAtThree:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1 if mode == "usr1" else signal.SIGTERM)

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
if mode in ("term", "usr1"):
    hooks.register(SignalAtThree())
try:
    ssl_core.run(pipeline, out=out, resume=mode == "resume", hooks=hooks)
except ssl_core.PreemptedError as exc:
    print(exc, file=sys.stderr)
    sys.exit(ssl_core.EXIT_PREEMPTED)
"""


@pytest.mark.parametrize("signal_name", ["term", "usr1"])
def test_a_preemption_signal_checkpoints_at_the_step_and_resume_is_exact(tmp_path: Path, signal_name: str) -> None:
    script = tmp_path / "preempt_script.py"
    script.write_text(SIGNAL_SCRIPT)
    pipeline = json.dumps({**TINY, "train": {**TINY["train"], "steps": 6, "checkpoint_every": 0}})

    def launch(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), pipeline, str(out), mode]
        return subprocess.run(command, capture_output=True, text=True, env=SCRIPT_ENV, timeout=240)

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert launch(straight, "full").returncode == 0
    signalled = launch(stopped, signal_name)
    assert signalled.returncode == ssl_core.EXIT_PREEMPTED == 75, signalled.stderr
    expected = "SIGUSR1" if signal_name == "usr1" else "SIGTERM"
    # sent after step 3's boundary check, so it is honoured at the next boundary
    assert f"{expected} received: stopped after step 4" in signalled.stderr
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["step-000004.pt"]  # no periodic ones
    assert launch(stopped, "resume").returncode == 0
    with (straight / "log.csv").open() as a, (stopped / "log.csv").open() as b:
        assert [r["loss"] for r in csv.DictReader(a)] == [r["loss"] for r in csv.DictReader(b)]  # bit for bit
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(stopped / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_the_cli_exits_75_after_a_preemption(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_module = importlib.import_module("ssl_core._run")

    def preempted(*args: Any, **kwargs: Any) -> None:
        raise ssl_core.PreemptedError("SIGTERM", 7, "runs/x/checkpoints/step-000007.pt")

    monkeypatch.setattr(run_module, "run", preempted)
    assert cli_main(["run", "--out", "unused"]) == 75
    assert "SIGTERM received: stopped after step 7" in capsys.readouterr().err


NODE_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
import ssl_core

ssl_core.run(json.loads(sys.argv[1]), out=sys.argv[2])
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_nodes_on_one_machine_match_one_process(tmp_path: Path) -> None:
    script = tmp_path / "node.py"
    script.write_text(NODE_SCRIPT)
    pipeline = json.dumps({**TINY, "train": {**TINY["train"], "steps": 4}})
    single = subprocess.run(
        [sys.executable, str(script), pipeline, str(tmp_path / "single")],
        capture_output=True, text=True, env=SCRIPT_ENV, timeout=240,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(rank),
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                endpoint,
                "--rdzv_id",
                "ssl-test",
                str(script),
                pipeline,
                str(tmp_path / "nodes"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=SCRIPT_ENV,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    metrics = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2
    with (tmp_path / "single" / "log.csv").open() as a, (tmp_path / "nodes" / "log.csv").open() as b:
        one, two = [float(r["loss"]) for r in csv.DictReader(a)], [float(r["loss"]) for r in csv.DictReader(b)]
    assert len(one) == len(two) == 4 and two == pytest.approx(one, rel=1e-5, abs=1e-6)
