"""Every pipeline in examples/pipelines runs end to end in a reduced setting, and mixes that cannot work fail early.

Reduced: a few steps, small data subsets, short probes. The point is that the files stay
valid and the components from different plugins fit together; the full-size numbers
come from benchmarks/crossmodal_fsdd.py and the docs. Tests needing the shared data
skip with the path they looked at.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import IncompatibleComponentsError, build_pipeline, load_config

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "examples" / "pipelines"
SHARED = (ROOT / ".." / "shared" / "data").resolve()
QUIET = ["train.progress=false", "plots=false"]


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs the plugins {', '.join(missing)} installed together")


def data(*parts: str) -> str:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return str(path)


def test_every_example_pipeline_is_covered_here() -> None:
    covered = {
        "dino_speech",
        "hubert_two_iterations",
        "mae_dino_cifar",
        "graphmae_grace_cora",
        "mvp_wav2vec2_ucr",
        "pretrain_then_evaluate",
    }
    assert {p.stem for p in PIPELINES.glob("*.toml")} == covered


def test_dino_objective_on_a_speech_encoder(tmp_path: Path) -> None:
    needs("ssl_speech", "ssl_vision")
    root = data("fsdd", "recordings")
    probe = '[{name="speech.utterance_probe", target="speaker", epochs=3}]'
    result = ssl_core.run(
        PIPELINES / "dino_speech.toml",
        out=tmp_path,
        root=root,
        overrides=[*QUIET, "train.steps=3", "train.batch_size=8", "data.limit=48", "data.progress=false",
                   "encoder.preset=tiny", "objective.out_dim=256", "objective.hidden_dim=64", f"evaluate={probe}"],
    )  # fmt: skip
    speaker = result.metrics["evaluations"]["speech.utterance_probe"]["accuracy"]
    assert 0.0 <= speaker <= 1.0 and "random_init" in result.metrics
    log = (tmp_path / "log.csv").read_text()
    assert "teacher_entropy" in log  # DINO's own scalars, logged on the speech run
    assert type(result.encoder).__name__ == "Wav2Vec2Encoder"  # DINO exports its EMA teacher: a speech encoder


def test_hubert_two_iterations_as_one_pipeline(tmp_path: Path) -> None:
    needs("ssl_speech")
    root = data("fsdd", "recordings")
    probe = '[{name="speech.utterance_probe", target="digit", epochs=2}]'
    result = ssl_core.run(
        PIPELINES / "hubert_two_iterations.toml",
        out=tmp_path,
        root=root,
        overrides=[*QUIET, "train.steps=2", "train.batch_size=8", "data.limit=40", "data.progress=false",
                   "encoder.preset=tiny", "stage.1.task.num_clusters=8", "stage.3.task.num_clusters=8",
                   "stage.3.task.layer=2", f"stage.5.evaluate={probe}"],
    )  # fmt: skip
    kinds = [(s["stage"], s["kind"]) for s in result.metrics["stages"]]
    assert kinds == [("mfcc-labels", "task"), ("iteration-1", "pretrain"), ("layer-labels", "task"),
                     ("iteration-2", "pretrain"), ("probe", "evaluate")]  # fmt: skip
    labels = torch.load(tmp_path / "3-layer-labels" / "labels.pt", weights_only=False)
    assert labels["source"] == "layer" and labels["num_clusters"] == 8
    stored = ssl_core.load_config(tmp_path / "4-iteration-2" / "config.toml")
    assert stored.data.params["labels"] == str(tmp_path / "3-layer-labels" / "labels.pt")
    assert (tmp_path / "stages.json").is_file() and (tmp_path / "5-probe" / "metrics.json").is_file()


def test_mae_plus_dino_on_one_vit(tmp_path: Path) -> None:
    needs("ssl_vision")
    root = data("cifar10")
    result = ssl_core.run(
        PIPELINES / "mae_dino_cifar.toml",
        out=tmp_path,
        root=root,
        overrides=[*QUIET, "train.steps=2", "train.batch_size=16", "data.max_per_class=5",
                   "encoder.depth=2", 'evaluate=[{name="core.knn", k=5}]', "compare_random_init=false"],
    )  # fmt: skip
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mae/loss", "dino/loss", "dino/teacher_entropy"} <= set(header)
    assert "knn_top1@5" in result.metrics["evaluations"]["core.knn"]


def test_graphmae_plus_contrastive_on_one_gat(tmp_path: Path) -> None:
    needs("ssl_graph")
    root = data("planetoid")
    result = ssl_core.run(
        PIPELINES / "graphmae_grace_cora.toml",
        out=tmp_path,
        root=root,
        overrides=[*QUIET, "train.steps=3", "encoder.hidden_dim=32", "encoder.heads=2",
                   'evaluate=[{name="graph.node_probe", epochs=5}]', "compare_random_init=false"],
    )  # fmt: skip
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"graphmae/loss", "simclr/loss"} <= set(header)
    assert result.metrics["train"]["steps"] == 3


def test_masked_value_prediction_on_the_speech_transformer(tmp_path: Path) -> None:
    needs("ssl_speech", "ssl_timeseries")
    result = ssl_core.run(
        PIPELINES / "mvp_wav2vec2_ucr.toml",
        out=tmp_path,
        overrides=[*QUIET, "train.steps=4", "encoder.preset=tiny"],
    )
    assert 0.0 <= result.metrics["evaluations"]["timeseries.svm"]["accuracy"] <= 1.0
    assert result.metrics["data"]["modality"] == "timeseries"


def test_pretrain_then_three_evaluators(tmp_path: Path) -> None:
    needs("ssl_timeseries")
    result = ssl_core.run(PIPELINES / "pretrain_then_evaluate.toml", out=tmp_path, overrides=[*QUIET, "train.steps=3"])
    evaluations = result.metrics["stages"][1]["evaluations"]
    assert list(evaluations) == ["timeseries.svm", "core.knn", "core.linear_probe"]
    loaded = ssl_core.load_encoder(tmp_path / "1-pretrain")
    direct = ssl_core.evaluate(loaded.encoder, loaded.splits, {"svm": ssl_core.default_registry().get(
        "evaluator", "timeseries.svm")()})  # fmt: skip
    assert direct["svm"]["accuracy"] == evaluations["timeseries.svm"]["accuracy"]  # stage 2 scored stage 1's encoder


@pytest.mark.parametrize(
    ("change", "words"),
    [
        # a DINO objective with views that make one view per sample
        ({"views": {"name": "speech.span_mask"}},
         ["objective 'vision.dino'", "views 'speech.span_mask'", "at least 2 views", "make 1"]),
        # image views on audio data
        ({"views": {"name": "vision.multi_crop"}}, ["views 'vision.multi_crop'", "expect image", "yields audio"]),
        # an encoder for another modality than the views produce
        ({"encoder": {"name": "core.mlp", "in_dim": 16}},
         ["encoder 'core.mlp' takes vector input", "dataset 'speech.fsdd' gives it audio"]),
        # an objective sized for another embedding width
        ({"objective": {"name": "vision.dino", "embed_dim": 999, "out_dim": 64, "hidden_dim": 32}},
         ["objective 'vision.dino'", "embed_dim=999", "encoder 'speech.wav2vec2' outputs 64"]),
    ],
)  # fmt: skip
def test_mixes_that_cannot_work_are_rejected_before_training(change: dict[str, Any], words: list[str]) -> None:
    needs("ssl_speech", "ssl_vision", "ssl_timeseries")
    root = data("fsdd", "recordings")
    raw = {
        "data": {"name": "speech.fsdd", "root": root, "limit": 16, "progress": False},
        "encoder": {"name": "speech.wav2vec2", "preset": "tiny"},
        "views": {"name": "speech.multi_crop"},
        "objective": {"name": "vision.dino", "out_dim": 64, "hidden_dim": 32},
        **change,
    }
    with pytest.raises(IncompatibleComponentsError) as info:
        build_pipeline(load_config(raw))
    for word in words:
        assert word in str(info.value)


class PoolingOnly(torch.nn.Module):
    """An encoder of any modality that returns only one vector per sample."""

    modality = "any"
    returns_tokens = False

    def __init__(self, in_channels: int, embed_dim: int = 8) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = torch.nn.Linear(in_channels, embed_dim)

    def forward(self, batch: dict[str, Any], token_mask: Any = None) -> ssl_core.Features:
        return ssl_core.Features(pooled=self.proj(batch["x"]).mean(1))


def test_tokens_needed_but_encoder_only_pools() -> None:
    needs("ssl_timeseries")
    registry = ssl_core.Registry()
    registry.register("encoder", "test.pooling", PoolingOnly)
    raw = {
        "data": {"name": "timeseries.ucr", "dataset": "GunPoint"},
        "encoder": {"name": "test.pooling"},
        "views": {"name": "timeseries.subsequence_mask"},
        "objective": {"name": "timeseries.mvp"},
    }
    with pytest.raises(IncompatibleComponentsError) as info:
        build_pipeline(load_config(raw), registry)
    text = str(info.value)
    assert "objective 'timeseries.mvp' needs per-token features" in text and "encoder 'test.pooling'" in text
