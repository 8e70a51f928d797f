"""Built-in loggers and the progress bar: hook implementations, switched on with ``[[logger]]`` or ``--logger``.

A logger is a component of kind ``logger`` (entry-point group ``ssl_core.loggers``): a
factory called with the run's ``out_dir`` and its table's parameters, returning an
object with :data:`~ssl_core.hookimpl` methods. It receives the resolved config
(``ssl_on_train_start``), every logged row (``ssl_log_metrics``), evaluation results
(``ssl_on_evaluate_end``), the plots (``ssl_log_artifact``) and the end of the run
(``ssl_on_run_end``, where it closes). Built in:

============  =====================================================  ==========================
name          writes                                                 needs
============  =====================================================  ==========================
csv           ``log.csv`` (rows), ``evaluations.csv``                nothing (the default)
jsonl         ``log.jsonl``: one JSON event a line                   nothing
tensorboard   ``tensorboard/`` event files                           ``ssl-core[tensorboard]``
mlflow        an MLflow run in ``mlruns/`` (a local file store)      ``ssl-core[mlflow]``
wandb         an offline W&B run in ``wandb/``                       ``ssl-core[wandb]``
============  =====================================================  ==========================

Example:
    >>> import tempfile
    >>> log = JSONLLogger(out_dir=Path(tempfile.mkdtemp()))
    >>> log.ssl_on_train_start(config={"name": "demo"}, start_step=0)
    >>> log.ssl_log_metrics(step=1, metrics={"step": 1.0, "loss": 2.5})
    >>> print(*(json.loads(line)["event"] for line in log.path.read_text().splitlines()))
    config metrics
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._hooks import hookimpl

__all__ = [
    "BUILTIN_LOGGERS",
    "CSVLogger",
    "JSONLLogger",
    "MLflowLogger",
    "ProgressBar",
    "TensorBoardLogger",
    "WandbLogger",
    "logged_rows",
]


def _require(module: str, logger: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"logger {logger!r} needs the {module.split('.')[0]} package: pip install 'ssl-core[{extra}]'"
        ) from exc


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _scalars(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))}


class ProgressBar:
    """A tqdm bar over the training steps (``train.progress``), with the current loss."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar: Any = None

    @hookimpl
    def ssl_on_train_start(self, start_step: int) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True)

    @hookimpl
    def ssl_on_step_end(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
            self._bar.update(1)

    @hookimpl
    def ssl_on_train_end(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (also after a failed run)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def logged_rows(path: Path, upto: float) -> list[dict[str, str]]:
    """The rows of a ``log.csv`` up to step ``upto``, without empty cells (what a resumed run keeps)."""
    with path.open(newline="") as f:
        rows = [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    return [r for r in rows if float(r.get("step") or 0) <= upto]


MONITOR_PREFIXES = ("monitor/", "health/")
"""Metric names of the online monitors (:mod:`ssl_core._monitor`): the CSV logger writes them to ``monitor.csv``."""


class CSVLogger:
    """``log.csv``: one row per logged step (columns fixed by the first row); ``evaluations.csv``: the results.

    On resume, rows after the resumed step are dropped first, so the file equals an
    uninterrupted run's.
    """

    def __init__(self, out_dir: Path | None, filename: str = "log.csv") -> None:
        self.path = out_dir / filename if out_dir is not None else None
        self.evaluations = out_dir / "evaluations.csv" if out_dir is not None else None
        self._fields: list[str] | None = None

    @hookimpl
    def ssl_on_train_start(self, start_step: int) -> None:
        if self.path is None:
            return
        rows = logged_rows(self.path, upto=start_step) if start_step > 0 and self.path.exists() else []
        self._fields = list(rows[0]) if rows else None
        if rows:
            self._write(rows, "w")
        elif self.path.exists():
            self.path.unlink()
        if self.evaluations is not None and self.evaluations.exists():
            self.evaluations.unlink()

    @hookimpl
    def ssl_log_metrics(self, metrics: Mapping[str, float]) -> None:
        if self.path is None:
            return
        if any(key.startswith(MONITOR_PREFIXES) for key in metrics):  # the online monitors: their own file
            self._write_monitors(metrics)
            return
        self._fields = self._fields or list(metrics)
        self._write([metrics], "a")

    def _write_monitors(self, metrics: Mapping[str, float]) -> None:
        """``monitor.csv``: a row per monitoring step; columns widen when a new scalar appears."""
        assert self.path is not None
        target = self.path.with_name("monitor.csv")
        rows = list(csv.DictReader(target.open(newline=""))) if target.exists() else []
        fields = list(dict.fromkeys([*(rows[0].keys() if rows else []), *metrics]))
        step = metrics.get("step")
        rows = [row for row in rows if step is None or float(row.get("step") or -1) < float(step)]  # resume
        with target.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows([*rows, dict(metrics)])

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        if self.evaluations is None:
            return
        new = not self.evaluations.exists()
        self.evaluations.parent.mkdir(parents=True, exist_ok=True)
        with self.evaluations.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["evaluator", "metric", "value"])
            writer.writerows([evaluator, k, v] for k, v in metrics.items())

    def _write(self, rows: Sequence[Mapping[str, Any]], mode: str) -> None:
        assert self.path is not None and self._fields is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = mode == "w" or not self.path.exists()
        with self.path.open("w" if header else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in self._fields} for row in rows)


class JSONLLogger:
    """``log.jsonl``: one JSON object per event (``config``, ``metrics``, ``evaluation``, ``artifact``, ``end``)."""

    def __init__(self, out_dir: Path | None, filename: str = "log.jsonl") -> None:
        self.path = out_dir / filename if out_dir is not None else None

    def _append(self, event: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(dict(event), default=str) + "\n")

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any], start_step: int) -> None:
        if self.path is None:
            return
        kept: list[str] = []
        if start_step > 0 and self.path.exists():  # resume: keep the metrics rows up to the resumed step
            for line in self.path.read_text().splitlines():
                event = json.loads(line)
                if event.get("event") == "metrics" and event["step"] <= start_step:
                    kept.append(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(f"{line}\n" for line in kept))
        self._append({"event": "config", "start_step": start_step, "config": dict(config)})

    @hookimpl
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._append({"event": "metrics", "step": step, **_scalars(metrics)})

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        self._append({"event": "evaluation", "evaluator": evaluator, "metrics": _scalars(metrics)})

    @hookimpl
    def ssl_log_artifact(self, name: str, path: str) -> None:
        self._append({"event": "artifact", "name": name, "path": path})

    @hookimpl
    def ssl_on_run_end(self) -> None:
        self._append({"event": "end"})


class TensorBoardLogger:
    """TensorBoard event files in ``{out_dir}/{subdir}``: scalars ``train/*``, ``eval/*``, the config as text, plots."""

    def __init__(self, out_dir: Path | None, subdir: str = "tensorboard") -> None:
        self._tensorboard = _require("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.log_dir = out_dir / subdir if out_dir is not None else None
        self._writer: Any = None
        self._step = 0

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any], start_step: int) -> None:
        if self.log_dir is None:
            return
        # purge_step drops events a killed run wrote after its last checkpoint
        self._writer = self._tensorboard.SummaryWriter(
            str(self.log_dir), purge_step=start_step + 1 if start_step > 0 else None
        )
        self._step = start_step
        self._writer.add_text("config", "```\n" + json.dumps(dict(config), indent=2, default=str) + "\n```", start_step)

    @hookimpl
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        self._step = step
        for key, value in _scalars(metrics).items():
            self._writer.add_scalar(f"train/{key}", value, step)

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for key, value in _scalars(metrics).items():
            self._writer.add_scalar(f"eval/{evaluator}/{key}", value, self._step)

    @hookimpl
    def ssl_log_artifact(self, name: str, path: str) -> None:
        if self._writer is None or not path.endswith(".png"):
            return
        import matplotlib.image

        image = matplotlib.image.imread(path)[..., :3]
        self._writer.add_image(f"plots/{name}", image, self._step, dataformats="HWC")

    @hookimpl
    def ssl_on_run_end(self) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _mlflow_key(key: str) -> str:
    """MLflow names allow letters, digits, ``_ - . : /`` and spaces: ``knn_top1@5`` becomes ``knn_top1_5``."""
    return re.sub(r"[^\w\-. :/]", "_", key)


class MLflowLogger:
    """An MLflow run: params (the flattened config), metrics ``train/*`` and ``eval/*``, plots as artifacts.

    ``tracking_uri`` defaults to a local file store in ``{out_dir}/mlruns``; the experiment
    is the pipeline's name unless ``experiment`` is given. A resumed run continues the
    same MLflow run (its id is kept in ``{out_dir}/mlflow_run_id``).
    """

    def __init__(self, out_dir: Path | None, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        self._tracking = _require("mlflow.tracking", "mlflow", "mlflow")
        self.out_dir = out_dir
        default_uri = (out_dir / "mlruns").resolve().as_uri() if out_dir is not None else None
        self.tracking_uri = tracking_uri or default_uri
        self.experiment = experiment
        self.run_id: str | None = None
        self._client: Any = None
        self._step = 0

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any], start_step: int) -> None:
        if self.tracking_uri is None:
            return
        if self.tracking_uri.startswith("file:"):  # MLflow 3 wants an explicit opt-in for the file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = client = self._tracking.MlflowClient(tracking_uri=self.tracking_uri)
        self._step = start_step
        id_file = self.out_dir / "mlflow_run_id" if self.out_dir is not None else None
        if start_step > 0 and id_file is not None and id_file.exists():
            self.run_id = id_file.read_text().strip()
            return
        name = self.experiment or str(config.get("name", "ssl"))
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
        self.run_id = client.create_run(experiment_id, run_name=str(config.get("name", "ssl"))).info.run_id
        if id_file is not None:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(f"{self.run_id}\n")
        for key, value in _flatten(config).items():
            client.log_param(self.run_id, key, str(value)[:500])

    @hookimpl
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.run_id is None:
            return
        self._step = step
        for key, value in _scalars(metrics).items():
            self._client.log_metric(self.run_id, _mlflow_key(f"train/{key}"), value, step=step)

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        if self.run_id is None:
            return
        for key, value in _scalars(metrics).items():
            self._client.log_metric(self.run_id, _mlflow_key(f"eval/{evaluator}/{key}"), value, step=self._step)

    @hookimpl
    def ssl_log_artifact(self, path: str) -> None:
        if self.run_id is not None:
            self._client.log_artifact(self.run_id, path, artifact_path="plots")

    @hookimpl
    def ssl_on_run_end(self) -> None:
        self.close("FINISHED")

    def close(self, status: str = "FAILED") -> None:
        """End the MLflow run (``FAILED`` when called after an error)."""
        if self.run_id is not None and self._client is not None:
            self._client.set_terminated(self.run_id, status=status)
            self._client = None


class WandbLogger:
    """A Weights & Biases run in offline mode (``{out_dir}/wandb``; ``wandb sync`` uploads it later)."""

    def __init__(self, out_dir: Path | None, project: str | None = None, mode: str = "offline") -> None:
        self._wandb = _require("wandb", "wandb", "wandb")
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"logger 'wandb': mode must be 'offline', 'online' or 'disabled', got {mode!r}")
        self.out_dir, self.project, self.mode = out_dir, project, mode
        self.run: Any = None
        self._step = 0

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any], start_step: int) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = str(config.get("name", "ssl"))
        self._step = start_step
        self.run = self._wandb.init(
            project=self.project or name.replace("/", "-"),
            name=name,
            dir=str(self.out_dir),
            mode=self.mode,
            config=dict(config),
            settings=self._wandb.Settings(silent=True, console="off"),
        )

    @hookimpl
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.run is None:
            return
        self._step = step
        self.run.log({f"train/{k}": v for k, v in _scalars(metrics).items()}, step=step)

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        if self.run is None:
            return
        for key, value in _scalars(metrics).items():
            self.run.summary[f"eval/{evaluator}/{key}"] = value

    @hookimpl
    def ssl_log_artifact(self, name: str, path: str) -> None:
        if self.run is not None and path.endswith(".png"):
            self.run.log({f"plots/{name}": self._wandb.Image(path)}, step=self._step)

    @hookimpl
    def ssl_on_run_end(self) -> None:
        self._finish(exit_code=0)

    def close(self) -> None:
        """Finish the run as failed (a no-op after ``ssl_on_run_end`` finished it)."""
        self._finish(exit_code=1)

    def _finish(self, exit_code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


BUILTIN_LOGGERS: dict[str, type] = {
    "core.csv": CSVLogger,
    "core.jsonl": JSONLLogger,
    "core.tensorboard": TensorBoardLogger,
    "core.mlflow": MLflowLogger,
    "core.wandb": WandbLogger,
}
"""ssl-core's loggers by name (also declared as ``ssl_core.loggers`` entry points, so ``ssl plugins`` lists them)."""
