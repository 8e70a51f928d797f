"""Several objectives on one encoder: weighted sums, own views, separate logs, checks, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import ssl_core
from ssl_core import (
    ConfigError,
    IncompatibleComponentsError,
    MultiObjective,
    MultiViews,
    Registry,
    Views,
    build_pipeline,
    load_config,
)
from ssl_core._config import to_dict
from ssl_core._hooks import make_plugin_manager

TWO: dict[str, Any] = {
    "name": "two-objectives",
    "seed": 1,
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 64, "embed_dim": 32},
    "views": {"name": "core.noise"},
    "objective": [
        {"name": "core.simclr", "hidden_dim": 64, "proj_dim": 16},
        {"name": "core.simclr", "weight": 0.25, "temperature": 0.5, "views": {"name": "core.noise", "num_views": 3}},
    ],
    "train": {"steps": 6, "batch_size": 64, "lr": 3e-3, "log_every": 1, "progress": False, "checkpoint_every": 1},
    "plots": False,
    "compare_random_init": False,
}


class _Constant(nn.Module):
    """An objective whose loss is ``value * mean(pooled)``; records the number of views it saw."""

    def __init__(self, embed_dim: int, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value))
        self.seen: list[int] = []

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        self.seen.append(len(views))
        loss = self.scale * encoder(views.batches[0]).pooled.mean()
        return {"loss": loss, "views": torch.tensor(float(len(views)))}


def _registry() -> Registry:
    registry = Registry()
    registry.register("objective", "test.constant", _Constant)
    return registry


def test_config_reads_weights_views_and_unique_labels() -> None:
    cfg = load_config(TWO)
    assert [(o.label, o.weight) for o in cfg.objectives] == [("simclr", 1.0), ("simclr#2", 0.25)]
    assert cfg.objectives[0].views is None and cfg.objectives[1].views is not None
    assert cfg.objectives[1].views.params == {"num_views": 3}
    assert cfg.multi_objective and cfg.objective.name == "core.simclr"
    assert load_config(to_dict(cfg)) == cfg  # the resolved config.toml reads back the same


def test_config_errors_name_the_objective() -> None:
    bad_weight = {**TWO, "objective": [{"name": "core.simclr", "weight": -1}]}
    with pytest.raises(ConfigError, match=r"objective\.0\.weight must be a non-negative number"):
        load_config(bad_weight)
    no_views = {k: v for k, v in TWO.items() if k != "views"}
    with pytest.raises(ConfigError, match=r"views = \{\.\.\.\} in every \[\[objective\]\]"):
        load_config(no_views)
    with pytest.raises(ConfigError, match="empty"):
        load_config({**TWO, "objective": []})


def test_weighted_sum_and_per_objective_views_and_logs() -> None:
    cfg = load_config(
        {
            **TWO,
            "objective": [
                {"name": "test.constant", "value": 1.0, "label": "a"},
                {"name": "test.constant", "value": 3.0, "weight": 0.5, "label": "b",
                 "views": {"name": "core.noise", "num_views": 4}},
            ],
        }
    )  # fmt: skip
    built = build_pipeline(cfg, _registry())
    assert isinstance(built.objective, MultiObjective) and isinstance(built.views, MultiViews)
    views = built.views({"x": built.splits.collate([built.splits.train[i] for i in range(8)])["x"]}, torch.Generator())
    out = built.objective(built.encoder, views)
    assert torch.allclose(out["loss"], out["a/loss"] + 0.5 * out["b/loss"])
    assert float(out["a/views"]) == 2.0 and float(out["b/views"]) == 4.0  # each objective got its own views
    out["loss"].backward()
    a, b = built.objective.objectives
    assert a.scale.grad is not None and b.scale.grad is not None
    # d(total)/d(scale) = weight * pooled mean = weight * loss / scale
    assert torch.allclose(a.scale.grad, out["a/loss"].detach() / 1.0)
    assert torch.allclose(b.scale.grad, 0.5 * out["b/loss"].detach() / 3.0)


def test_shared_views_run_once_per_batch() -> None:
    calls: list[int] = []

    class Counting:
        modality = "vector"

        def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
            calls.append(1)
            return Views(batches=[batch, batch])

    shared = Counting()
    views = MultiViews([shared, shared, Counting()])({"x": torch.zeros(2, 3)}, torch.Generator())
    assert len(calls) == 2
    per = views.extras["per_objective"]
    assert per[0] is per[1] and per[2] is not per[0]


def test_each_pair_is_checked_before_training_naming_both() -> None:
    class NeedsThree(_Constant):
        min_views: ClassVar[int] = 3

    registry = _registry()
    registry.register("objective", "test.three", NeedsThree)
    cfg = load_config({**TWO, "objective": [{"name": "core.simclr"}, {"name": "test.three"}]})
    with pytest.raises(IncompatibleComponentsError) as info:
        build_pipeline(cfg, registry)
    text = str(info.value)
    assert "'test.three'" in text and "'core.noise'" in text and "at least 3 views" in text and "make 2" in text
    three_views = {"name": "test.three", "views": {"name": "core.noise", "num_views": 3}}
    fixed = load_config({**TWO, "objective": [{"name": "core.simclr"}, three_views]})
    build_pipeline(fixed, registry)


def test_export_encoder_comes_from_the_first_objective_that_has_one() -> None:
    teacher = nn.Linear(2, 2)

    class WithTeacher(nn.Module):
        def export_encoder(self, encoder: nn.Module) -> nn.Module:
            return teacher

    student = nn.Linear(2, 2)
    assert MultiObjective({"a": nn.Identity(), "b": WithTeacher()}).export_encoder(student) is teacher
    assert MultiObjective({"a": nn.Identity()}).export_encoder(student) is student


class _Stopped(Exception):
    pass


class _StopAt:
    """A hook plugin that interrupts training after ``step`` (its checkpoint is written first)."""

    def __init__(self, step: int) -> None:
        self.step = step

    @ssl_core.hookimpl
    def ssl_on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            raise _Stopped


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_training_logs_each_objective_and_resumes_exactly(tmp_path: Path) -> None:
    straight = ssl_core.run(TWO, out=tmp_path / "straight")
    rows = _rows(tmp_path / "straight" / "log.csv")
    assert {"loss", "simclr/loss", "simclr#2/loss"} <= set(rows[0])
    for row in rows:
        total = float(row["simclr/loss"]) + 0.25 * float(row["simclr#2/loss"])
        assert abs(float(row["loss"]) - total) < 1e-5
    first = tmp_path / "resumed"
    hooks = make_plugin_manager(load_entry_points=False)
    hooks.register(_StopAt(3))
    with pytest.raises(_Stopped):
        ssl_core.run(TWO, out=first, hooks=hooks)
    resumed = ssl_core.run(TWO, out=first, resume=True)
    assert resumed.metrics["train"]["resumed_from"] == 3
    assert [r["loss"] for r in _rows(first / "log.csv")] == [r["loss"] for r in rows]
    for key, value in straight.encoder.state_dict().items():
        assert torch.equal(value, resumed.encoder.state_dict()[key]), key
