"""Loggers as hooks: each built-in logger is read back with its own library's reader."""

from __future__ import annotations

import csv
import glob
import importlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_core import ConfigError, Registry

TINY: dict[str, Any] = {
    "name": "logged",
    "seed": 1,
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp", "hidden_dim": 32, "embed_dim": 16},
    "views": {"name": "core.noise"},
    "objective": {"name": "core.simclr", "hidden_dim": 32, "proj_dim": 16},
    "train": {"steps": 6, "batch_size": 32, "log_every": 2, "progress": False},
    "evaluate": [{"name": "core.knn", "k": [5]}],
    "compare_random_init": False,
}


def _csv_final_loss(out: Path) -> tuple[float, float]:
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["step"]), float(rows[-1]["loss"])


def _jsonl_final_loss(out: Path) -> tuple[float, float]:
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "config" and events[0]["config"]["name"] == "logged"
    assert {"evaluation", "artifact", "end"} <= {e["event"] for e in events}
    last = [e for e in events if e["event"] == "metrics"][-1]
    return float(last["step"]), float(last["loss"])


def _tensorboard_final_loss(out: Path) -> tuple[float, float]:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert "eval/core.knn/knn_top1@5" in events.Tags()["scalars"]
    assert {"plots/loss", "plots/embeddings"} <= set(events.Tags()["images"])
    last = events.Scalars("train/loss")[-1]
    return float(last.step), float(last.value)


def _mlflow_final_loss(out: Path) -> tuple[float, float]:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    run_id = (out / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "6"
    assert "eval/core.knn/knn_top1_5" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/loss.png", "plots/embeddings.png"}
    last = client.get_metric_history(run_id, "train/loss")[-1]
    return float(last.step), float(last.value)


def test_four_loggers_record_the_same_final_loss(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")  # both are in CI's dependency layer (noxfile.py)
    pytest.importorskip("mlflow")
    torch.set_num_threads(1)
    pipeline = {**TINY, "logger": [{"name": "csv"}, {"name": "jsonl"}, {"name": "tensorboard"}, {"name": "mlflow"}]}
    result = ssl_core.run(pipeline, out=tmp_path)
    final = (6.0, result.metrics["train"]["final_loss"])
    assert _csv_final_loss(tmp_path) == final
    assert _jsonl_final_loss(tmp_path) == final
    assert _tensorboard_final_loss(tmp_path) == pytest.approx(final, rel=1e-6)  # stored as float32
    assert _mlflow_final_loss(tmp_path) == final
    with (tmp_path / "evaluations.csv").open() as f:
        assert {r["metric"] for r in csv.DictReader(f)} >= {"knn_top1@5", "seconds"}


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline ``run-*.wandb`` file (LevelDB log format, W&B header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunk, pos = [], b"", 7
    while pos + 7 <= len(data):
        block_left = 32768 - (pos % 32768)
        if block_left < 7:  # block trailer padding
            pos += block_left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
        elif kind == 0:
            break
    return records


def test_wandb_offline_run_holds_the_losses(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    torch.set_num_threads(1)
    result = ssl_core.run({**TINY, "plots": False}, out=tmp_path, loggers=["wandb"])
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    losses = []
    for record in _wandb_records(Path(run_file)):
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: i.value_json for i in record.history.item}
            if "train/loss" in items:
                losses.append(json.loads(items["train/loss"]))
    assert len(losses) == 4  # steps 1, 2, 4, 6
    assert losses[-1] == result.metrics["train"]["final_loss"]
    assert (tmp_path / "log.csv").exists()  # --logger adds to the default csv


def test_missing_extra_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'ssl-core\[wandb\]'"):
        ssl_core.run({**TINY, "logger": [{"name": "wandb"}]}, out=tmp_path)


def test_third_party_logger_and_logging_off(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    seen: list[tuple[str, Any]] = []

    class Printer:
        def __init__(self, out_dir: Path | None, prefix: str = "") -> None:
            self.prefix = prefix

        @ssl_core.hookimpl
        def ssl_on_train_start(self, config: Any) -> None:
            seen.append(("config", config["name"]))

        @ssl_core.hookimpl
        def ssl_log_metrics(self, step: int) -> None:
            seen.append((self.prefix, step))

    registry = Registry()
    registry.register("logger", "demo.printer", Printer)
    pipeline = {**TINY, "plots": False, "logger": [{"name": "demo.printer", "prefix": "p"}]}
    ssl_core.run(pipeline, out=tmp_path / "a", registry=registry)
    assert seen == [("config", "logged"), ("p", 1), ("p", 2), ("p", 4), ("p", 6)]
    assert not (tmp_path / "a" / "log.csv").exists()  # an explicit [[logger]] list replaces the default
    with pytest.raises(ConfigError, match="has no parameter 'prefx'; did you mean 'prefix'"):
        ssl_core.run({**pipeline, "logger": [{"name": "demo.printer", "prefx": "p"}]}, registry=registry)
    ssl_core.run({**TINY, "plots": False, "logger": []}, out=tmp_path / "b")
    assert (tmp_path / "b" / "metrics.json").exists() and not (tmp_path / "b" / "log.csv").exists()


def test_a_failing_logger_or_plot_is_a_warning_and_the_results_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)

    class Flaky:
        def __init__(self, out_dir: Path | None) -> None:
            self.calls = 0

        @ssl_core.hookimpl
        def ssl_log_metrics(self, step: int) -> None:
            self.calls += 1
            raise OSError("disk full")

    registry = Registry()
    registry.register("logger", "demo.flaky", Flaky)
    plots = importlib.import_module("ssl_core._plots")

    def broken_plot(*args: Any, **kwargs: Any) -> None:
        assert (tmp_path / "run" / "metrics.json").exists()  # results are on disk before any plot
        assert "core.knn" in capsys.readouterr().out  # and the table is printed
        raise ValueError("n_components=50 must be between 0 and min(n_samples, n_features)=13")

    monkeypatch.setattr(plots, "plot_embeddings", broken_plot)
    pipeline = {**TINY, "logger": [{"name": "csv"}, {"name": "demo.flaky"}]}
    with pytest.warns(UserWarning) as caught:
        result = ssl_core.run(pipeline, out=tmp_path / "run", registry=registry, hooks=_printing_hooks())
    messages = [str(w.message) for w in caught]
    assert any("logger 'demo.flaky' failed in ssl_log_metrics (OSError: disk full)" in m for m in messages)
    assert any("plot 'embeddings' was skipped: ValueError: n_components=50" in m for m in messages)
    assert result.metrics["plots"] == [str(tmp_path / "run" / "loss.png")]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["evaluations"]["core.knn"]
    assert _csv_final_loss(tmp_path / "run")[0] == 6.0  # the other logger kept going


def _printing_hooks() -> Any:
    """A plugin manager with the CLI's results table (what `ssl run` registers)."""
    from ssl_core._cli import _results_table

    hooks = ssl_core.make_plugin_manager(load_entry_points=False)
    hooks.register(_results_table(set()))
    return hooks
