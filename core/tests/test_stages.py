"""[[stage]] pipelines: the encoder and artefacts pass on, errors come before training, resume skips finished stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import ssl_core
from ssl_core import ConfigError, IncompatibleComponentsError, Registry, load_stages
from ssl_core._hooks import make_plugin_manager
from ssl_core._stages import resolve_artefacts

DEFAULTS: dict[str, Any] = {
    "name": "staged",
    "seed": 2,
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 64, "embed_dim": 32},
    "views": {"name": "core.noise"},
    "train": {"steps": 4, "batch_size": 64, "lr": 3e-3, "log_every": 1, "progress": False, "checkpoint_every": 1},
    "plots": False,
    "compare_random_init": False,
}
SEEN: dict[str, Any] = {}


def _fingerprint(encoder: nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in encoder.parameters()))


def record_encoder(encoder: nn.Module, out_dir: Path, label: str = "x") -> dict[str, Any]:
    """A task: remember the encoder it was handed; return a number and a file as artefacts."""
    SEEN[label] = _fingerprint(encoder)
    path = Path(out_dir) / "note.txt"
    path.write_text(label)
    return {"fingerprint": SEEN[label], "note": str(path), "test_size": 0.5}


def _registry() -> Registry:
    registry = Registry()
    registry.register("task", "test.record", record_encoder)
    return registry


def staged(*stages: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**DEFAULTS, **changes, "stage": list(stages)}


PRETRAIN = {"name": "pretrain", "objective": {"name": "core.simclr", "hidden_dim": 64, "proj_dim": 16}}


def test_stages_hand_the_encoder_and_artefacts_on(tmp_path: Path) -> None:
    pipeline = staged(
        PRETRAIN,
        {"name": "look", "task": {"name": "test.record", "label": "after"}},
        {"name": "again", "objective": {"name": "core.simclr"}, "data": {"test_size": "${look.test_size}"},
         "train": {"steps": 2}},
        {"name": "probe", "kind": "evaluate", "evaluate": [{"name": "core.knn", "k": 5}]},
    )  # fmt: skip
    result = ssl_core.run(pipeline, out=tmp_path, registry=_registry())
    stages = result.metrics["stages"]
    assert [(s["stage"], s["kind"]) for s in stages] == [
        ("pretrain", "pretrain"), ("look", "task"), ("again", "pretrain"), ("probe", "evaluate")
    ]  # fmt: skip
    first = ssl_core.load_encoder(tmp_path / "1-pretrain")
    assert SEEN["after"] == pytest.approx(_fingerprint(first.encoder))  # the task got stage 1's encoder
    assert stages[0]["train"]["steps"] == 4 and stages[2]["train"]["steps"] == 2  # stage tables update [train]
    assert ssl_core.load_config(tmp_path / "3-again" / "config.toml").data.params == {"test_size": 0.5}
    assert Path(stages[1]["artefacts"]["note"]).read_text() == "after"
    # the evaluate stage scored stage 3's encoder, on the top-level [data] (stage 3 changed its own only)
    probe = stages[3]["evaluations"]["core.knn"]
    direct = ssl_core.evaluate(result.encoder, first.splits, {"core.knn": ssl_core.KNNEvaluator(k=5)})
    assert probe["knn_top1@5"] == direct["core.knn"]["knn_top1@5"]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["pretrain", "look", "again", "probe"]


def test_init_scratch_starts_from_a_fresh_encoder(tmp_path: Path) -> None:
    pipeline = staged(
        PRETRAIN,
        {"name": "fresh", "init": "scratch", "task": {"name": "test.record", "label": "scratch"}},
        {"name": "kept", "task": {"name": "test.record", "label": "kept"}},
    )
    result = ssl_core.run(pipeline, registry=_registry())
    assert SEEN["kept"] == pytest.approx(_fingerprint(result.encoder))
    fresh = ssl_core.build_pipeline(ssl_core.load_config({**DEFAULTS, "objective": {"name": "core.simclr"}})).encoder
    assert SEEN["scratch"] == pytest.approx(_fingerprint(fresh))  # scratch: the seeded random init


def test_overrides_reach_every_stage_or_one(tmp_path: Path) -> None:
    two = staged(PRETRAIN, {"name": "second", "objective": {"name": "core.simclr"}})
    loaded = load_stages(two, ["train.steps=3", "stage.2.train.lr=0.5"])
    assert [s.pipeline["train"]["steps"] for s in loaded.stages] == [3, 3]
    assert [s.pipeline["train"]["lr"] for s in loaded.stages] == [3e-3, 0.5]
    with pytest.raises(ConfigError, match=r"stage\.N\.key=value"):
        load_stages(two, ["stage.x.train.steps=3"])


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "a", "objective": {"name": "core.simclr"}, "data": {"x": "${b.path}"}},
          {"name": "b", "task": {"name": "test.record"}}], r"refers to \$\{b\.\.\.\}, which is not an earlier stage"),
        ([PRETRAIN, PRETRAIN], "must be unique"),
        ([{"name": "p", "kind": "evaluate"}], "needs \\[\\[stage.evaluate\\]\\]"),
        ([{"name": "p", "objectiv": {"name": "core.simclr"}}], "did you mean 'objective'"),
        ([{"name": "p", "kind": "train"}], "kind must be"),
        ([{"name": "p", "init": "random"}], "init must be 'previous' or 'scratch'"),
        ([{"name": "p"}], r"stage 'p': the pipeline needs a \[objective\]"),
    ],
)  # fmt: skip
def test_stage_mistakes_are_reported_before_anything_runs(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stages(staged(*stages))


def test_a_stage_whose_encoder_differs_names_what_does_not_fit() -> None:
    pipeline = staged(PRETRAIN, {"name": "wider", "objective": {"name": "core.simclr"},
                                 "encoder": {"embed_dim": 48}})  # fmt: skip
    with pytest.raises(IncompatibleComponentsError) as info:
        ssl_core.run(pipeline)
    text = str(info.value)
    assert "stage 'wider'" in text and "encoder 'core.mlp'" in text and "(32,)" in text and "(48,)" in text
    assert "init = 'scratch'" in text


def test_evaluate_stage_without_a_trained_encoder_says_what_to_do() -> None:
    pipeline = staged({"name": "probe", "kind": "evaluate", "evaluate": [{"name": "core.knn"}]}, PRETRAIN)
    with pytest.raises(ConfigError, match="init = 'scratch'"):
        ssl_core.run(pipeline)


def test_load_config_points_staged_files_to_run() -> None:
    with pytest.raises(ConfigError, match="load_stages"):
        ssl_core.load_config(staged(PRETRAIN))


def test_artefact_references_resolve_whole_or_inside_strings() -> None:
    artefacts = {"a": {"n": 3, "dir": "/tmp/x"}}
    assert resolve_artefacts({"k": "${a.n}", "p": "${a.dir}/labels.pt", "l": ["${a.n}"]}, artefacts) == {
        "k": 3, "p": "/tmp/x/labels.pt", "l": [3]
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"has no artefact 'm'.*it has: dir, n"):
        resolve_artefacts("${a.m}", artefacts)


class _Stop(Exception):
    pass


class _StopSecondStage:
    def __init__(self) -> None:
        self.stage = ""

    @ssl_core.hookimpl
    def ssl_on_train_start(self, config: dict[str, Any], encoder: Any, objective: Any, out_dir: Any) -> None:
        self.stage = config["name"]

    @ssl_core.hookimpl
    def ssl_on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        if self.stage.endswith("/second") and step == 2:
            raise _Stop


def test_resume_skips_finished_stages_and_continues_the_interrupted_one(tmp_path: Path) -> None:
    pipeline = staged(PRETRAIN, {"name": "second", "objective": {"name": "core.simclr"}})
    straight = ssl_core.run(pipeline, out=tmp_path / "straight")
    out = tmp_path / "cut"
    hooks = make_plugin_manager(load_entry_points=False)
    hooks.register(_StopSecondStage())
    with pytest.raises(_Stop):
        ssl_core.run(pipeline, out=out, hooks=hooks)
    first_log = (out / "1-pretrain" / "log.csv").stat().st_mtime_ns
    resumed = ssl_core.run(pipeline, out=out, resume=True)
    assert (out / "1-pretrain" / "log.csv").stat().st_mtime_ns == first_log  # stage 1 was not run again
    assert resumed.metrics["stages"][1]["train"]["resumed_from"] == 2
    for key, value in straight.encoder.state_dict().items():
        assert torch.equal(value, resumed.encoder.state_dict()[key]), key
