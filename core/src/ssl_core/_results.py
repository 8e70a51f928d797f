"""What a run produces: the metrics document (typed), its one writer, and :class:`RunResult`.

Every ``metrics.json`` and ``stages.json`` of a run directory is written by
:func:`write_json_atomic` (through the checkpoints' atomic writer), on rank 0 only.

Example:
    >>> jsonable({"n": 3, "path": Path("a.wav"), "tensor": object()})
    {'n': 3, 'path': 'a.wav'}
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ._checkpoint import write_atomic

if TYPE_CHECKING:
    from torch import nn

    from ._config import PipelineConfig

__all__ = [
    "DataSummary",
    "EvaluationResults",
    "MetricsDocument",
    "RunResult",
    "StageRecord",
    "StagesDocument",
    "TrainSummary",
    "environment",
    "jsonable",
    "write_json_atomic",
]

EvaluationResults = dict[str, dict[str, float]]
"""``{evaluator: {metric: value}}``, as :func:`ssl_core.evaluate` returns it."""


class TrainSummary(TypedDict):
    """The ``train`` section of ``metrics.json``."""

    steps: int
    seconds: float
    samples_per_second: float
    final_loss: float | None
    peak_memory_mb: float | None
    resumed_from: int | None
    world_size: int
    precision: str


class DataSummary(TypedDict):
    """The ``data`` section of ``metrics.json``."""

    name: str
    modality: str
    num_classes: int | None
    info: dict[str, Any]
    skipped_in_training: int
    skipped_names: list[str]
    skipped_in_evaluation: int
    """Items the evaluation splits skipped (each once, however many evaluators read them)."""
    skipped_in_evaluation_names: list[str]
    dropped_batches: int
    """Batches of an iterable source left on some ranks when another rank's share ran out (0 otherwise)."""


class MetricsDocument(TypedDict, total=False):
    """``metrics.json`` of one pretraining run (``name``, ``evaluations`` always present)."""

    name: str
    evaluations: EvaluationResults
    random_init: EvaluationResults
    train: TrainSummary
    environment: dict[str, Any]
    data: DataSummary
    plots: list[str]
    artefacts: dict[str, Any]
    monitors: dict[str, Any]
    """Online monitors: ``every``, ``samples``, ``steps``, ``curves`` (name -> values), ``alarms``."""


class StageRecord(TypedDict):
    """One finished stage in ``stages.json``."""

    name: str
    kind: str
    encoder_checkpoint: str | None
    metrics: dict[str, Any]
    artefacts: dict[str, Any]


class StagesDocument(TypedDict):
    """``stages.json``: the finished stages of a staged pipeline, in order."""

    name: str
    stages: list[StageRecord]


@dataclass
class RunResult:
    """The outcome of :func:`ssl_core.run`: the metrics document and where files went.

    ``is_main`` is ``False`` on the other ranks under ``torchrun``: they hold the trained
    encoder, but only rank 0 evaluated, wrote files and has the full ``metrics``.
    """

    metrics: dict[str, Any]
    config: PipelineConfig
    out_dir: Path | None
    encoder: nn.Module
    history: list[dict[str, float]]
    is_main: bool = True


def environment() -> dict[str, Any]:
    """Versions and hardware facts recorded with every run.

    Example:
        >>> sorted(environment())[:3]
        ['cpu', 'cpu_count', 'cpu_native_bf16']
    """
    import torch

    from ._device import native_bf16
    from ._version import __version__

    return {
        "ssl_core": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_native_bf16": native_bf16("cpu"),  # bf16 timings mean little without it
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_DROP = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return [v for v in items if v is not _DROP]
    if isinstance(value, Path):
        return str(value)
    return _DROP


def jsonable(value: Any) -> Any:
    """The JSON-representable part of ``value`` (counts, names, paths); tensors and other objects are dropped."""
    out = _jsonable(value)
    return None if out is _DROP else out


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> Path:
    """Write ``document`` as indented JSON to ``path``, atomically (never half-written).

    Example:
        >>> import tempfile
        >>> p = write_json_atomic(Path(tempfile.mkdtemp()) / "m.json", {"name": "x"})
        >>> json.loads(p.read_text())
        {'name': 'x'}
    """
    text = json.dumps(dict(document), indent=2) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))
