"""Online monitors and collapse alarms (issue 16): RankMe, std, online kNN, objective health, warn or stop."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import ssl_core
from ssl_core import CollapseError, ObjectiveBase, Views, rankme
from ssl_core._monitor import MonitorHistory, normalized_std


class PositivePairsOnly(ObjectiveBase):
    """Pulls two views together with nothing against it (no negatives, stop-gradient or predictor): collapses."""

    min_views = 2

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(embed_dim, embed_dim)
        self.last_cos = 0.0

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        a, b = (self.head(encoder(v).pooled) for v in views.batches[:2])
        cos = nn.functional.cosine_similarity(a, b).mean()
        self.last_cos = float(cos.detach())
        return {"loss": -cos}

    def health(self) -> dict[str, float]:
        return {"pair_cosine": self.last_cos}

    def health_alarms(self, health: Any) -> list[tuple[str, str]]:
        if health["pair_cosine"] > 0.999:
            return [("pairs_identical", "the two views embed identically: add negatives")]
        return []


def pipeline(objective: str, steps: int = 300, **train: Any) -> dict[str, Any]:
    return {
        "name": "monitored",
        "data": {"name": "core.digits"},
        "encoder": {"name": "core.mlp", "hidden_dim": 64, "embed_dim": 32},
        "views": {"name": "core.noise"},
        "objective": {"name": objective},
        "train": {
            "steps": steps,
            "batch_size": 64,
            "lr": 3e-3,
            "progress": False,
            "monitor_every": 50,
            "monitor_samples": 256,
            **train,
        },
        "evaluate": [],
        "compare_random_init": False,
    }


def registry() -> ssl_core.Registry:
    reg = ssl_core.Registry()
    reg.register("objective", "test.positive_pairs", PositivePairsOnly)
    return reg


def test_rankme_and_std_tell_spread_from_collapsed() -> None:
    torch.manual_seed(0)
    spread, line = torch.randn(512, 32), torch.randn(512, 1) * torch.ones(1, 32)
    assert rankme(spread) > 25 and rankme(line) < 1.01
    assert normalized_std(spread) > 0.15 and normalized_std(torch.ones(512, 32)) == 0.0


def test_a_collapsing_objective_fires_alarms_and_they_are_written(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ssl_core.run(pipeline("test.positive_pairs"), out=tmp_path / "run", registry=registry())
    alarms = [str(w.message) for w in caught if "collapse alarm" in str(w.message)]
    rules = {a["rule"] for a in result.metrics["monitors"]["alarms"]}
    assert {"rankme_drop", "std_zero", "pairs_identical"} <= rules, rules
    assert len(alarms) == len(result.metrics["monitors"]["alarms"])  # one warning per rule, not per step
    monitors = json.loads((tmp_path / "run" / "metrics.json").read_text())["monitors"]
    assert monitors["steps"] == [0, 50, 100, 150, 200, 250, 300] and monitors["every"] == 50
    assert {"monitor/rankme", "monitor/std", "monitor/knn_top1", "health/pair_cosine"} <= set(monitors["curves"])
    ranks = monitors["curves"]["monitor/rankme"]
    assert ranks[-1] < 0.25 * ranks[0]
    rows = list(csv.DictReader((tmp_path / "run" / "monitor.csv").open()))
    assert [float(r["step"]) for r in rows] == [0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    assert (tmp_path / "run" / "monitor.png").stat().st_size > 0
    assert "monitor/rankme" not in next(csv.DictReader((tmp_path / "run" / "log.csv").open()))


def test_simclr_fires_no_alarm_and_its_online_knn_rises(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ssl_core.run(pipeline("core.simclr"), out=tmp_path / "run")
    assert not [w for w in caught if "collapse alarm" in str(w.message)]
    curves = result.metrics["monitors"]["curves"]
    assert result.metrics["monitors"]["alarms"] == [] and curves["monitor/knn_top1"][-1] > 0.8


@pytest.mark.filterwarnings("ignore:collapse alarm")
def test_on_collapse_stop_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    config = pipeline("test.positive_pairs", on_collapse="stop", checkpoint_every=20)
    with pytest.raises(CollapseError, match=r"collapse at step 50 .*the last good checkpoint is .*step-000040\.pt"):
        ssl_core.run(config, out=tmp_path / "run", registry=registry())
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert kept[-1] == "step-000040.pt"  # nothing written at the alarm step
    stopped = ssl_core.load_checkpoint(tmp_path / "run" / "checkpoints" / kept[-1], weights_only=False)
    assert stopped["monitors"]["alarms"] == [] and stopped["monitors"]["steps"] == [0]


def test_history_survives_a_round_trip() -> None:
    history = MonitorHistory(every=5, samples=8)
    history.record(5, {"monitor/rankme": 3.0})
    history.record(10, {"monitor/rankme": 2.0, "health/x": 1.0})
    again = MonitorHistory.from_dict(json.loads(json.dumps(history.as_dict())))
    assert again.curves == {"monitor/rankme": [3.0, 2.0], "health/x": [None, 1.0]} and again.steps == [5, 10]


def test_monitors_are_off_for_short_runs_and_when_asked() -> None:
    from ssl_core._monitor import monitor_interval

    assert monitor_interval(None, 40) == 50 and monitor_interval(0, 10_000) == 0 and monitor_interval(None, 4000) == 200


class _Constant(nn.Module):
    """An encoder whose embedding is one point for every input, as a narrow random init can be."""

    def forward(self, batch: dict[str, Tensor]) -> Any:
        from ssl_core import Features

        x = batch["x"].float()
        return Features(pooled=torch.ones(len(x), 16) + 1e-6 * x[:, :16])


def _monitor_of(items: list[dict[str, Any]], precision: str = "fp32") -> Any:
    """A monitor over all of ``items`` (``x`` vectors, ``y`` labels), every 10 steps, on CPU."""
    from ssl_core._monitor import TrainingMonitor

    return TrainingMonitor(
        items,
        lambda chunk: {"x": torch.stack([c["x"] for c in chunk]), "y": torch.tensor([c["y"] for c in chunk])},
        every=10,
        samples=len(items),
        seed=0,
        device=torch.device("cpu"),
        precision=precision,  # type: ignore[arg-type]
    )


def test_a_narrow_embedding_at_initialisation_is_not_a_collapse_but_after_training_it_is() -> None:
    monitor = _monitor_of([{"x": torch.randn(32), "y": i % 3} for i in range(64)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, at_init = monitor.measure(0, _Constant(), nn.Identity())
        _, after = monitor.measure(10, _Constant(), nn.Identity())
    assert at_init == [] and [a.rule for a in after] == ["std_zero"]
    assert [str(w.message) for w in caught if "collapse alarm at step 10 (std_zero)" in str(w.message)]


class _RecordsAutocast(nn.Module):
    """Pools its input and records whether it ran under CPU autocast (and at which dtype)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype | None] = []

    def forward(self, batch: dict[str, Tensor]) -> Any:
        enabled = torch.is_autocast_enabled("cpu")
        self.seen.append(torch.get_autocast_dtype("cpu") if enabled else None)
        return type("Out", (), {"pooled": batch["x"]})()


@pytest.mark.parametrize(("precision", "expected"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_the_monitors_embed_at_the_training_precision(precision: str, expected: torch.dtype | None) -> None:
    monitor = _monitor_of([{"x": torch.randn(8), "y": i % 2} for i in range(16)], precision=precision)
    encoder = _RecordsAutocast()
    values, _ = monitor.measure(0, encoder, nn.Identity())
    assert encoder.seen == [expected]
    assert values["monitor/rankme"] > 1.0  # the float32 statistics are computed outside autocast
