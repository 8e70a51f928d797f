"""Online monitors and collapse alarms: is pretraining learning, and has it collapsed? (issue 16)

Before the first step, every ``train.monitor_every`` steps and at the last step, the loop
embeds a fixed slice of the training data (``train.monitor_samples`` samples, chosen once
from the seed, in eval mode, no augmentation) and records:

- ``monitor/rankme``: the effective rank of the pooled embeddings (RankMe, Garrido et
  al. 2023): ``exp`` of the entropy of the normalised singular values;
- ``monitor/std``: the mean per-dimension standard deviation of the L2-normalised
  embeddings (0 when every sample maps to one point; about ``1/sqrt(D)`` when they
  spread over the sphere);
- ``monitor/knn_top1``: with labels, an online kNN (k 20, T 0.07) from the training
  slice to the same number of test samples;
- the objective's own health scalars (``health()``, for example DINO's teacher entropy
  or wav2vec 2.0's codebook perplexity), as ``health/<name>``.

Alarms are rules that recognise collapse: RankMe below 15% of its value at
initialisation, the
std near 0, and the objective's own rules (``health_alarms(health)``). Each alarm is one
warning naming the symptom and the known remedies; ``train.on_collapse = "stop"`` ends
training there (:class:`~ssl_core.CollapseError`) and keeps the last good checkpoint.

Example:
    >>> torch.manual_seed(0) is not None
    True
    >>> spread, point = torch.randn(256, 16), torch.ones(256, 16)
    >>> round(rankme(spread), 1) > 12, round(rankme(point), 1)
    (True, 1.0)
    >>> normalized_std(point)
    0.0
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._device import Precision, autocast_context, move_to_device
from ._errors import SSLCoreError

__all__ = [
    "Alarm",
    "CollapseError",
    "MonitorHistory",
    "TrainingMonitor",
    "monitor_interval",
    "normalized_std",
    "rankme",
]

RANKME_DROP = 0.15
"""The RankMe alarm fires when the effective rank falls below this fraction of its first value."""
STD_FLOOR = 0.1
"""The std alarm fires when the normalised std falls below this fraction of ``1/sqrt(D)``."""


def rankme(embeddings: Tensor, eps: float = 1e-7) -> float:
    """Effective rank of ``[N, D]`` embeddings: ``exp(H(p))`` with ``p`` the singular values over their sum."""
    values = torch.linalg.svdvals(embeddings.float())
    p = values / (values.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def normalized_std(embeddings: Tensor) -> float:
    """Mean over dimensions of the standard deviation of the L2-normalised embeddings."""
    return float(F.normalize(embeddings.float(), dim=1).std(dim=0).mean())


def monitor_interval(requested: int | None, steps: int) -> int:
    """``requested``, or when unset: every ``steps // 20`` steps, at least 50 (0 turns monitoring off).

    Example:
        >>> monitor_interval(None, 1000), monitor_interval(None, 300), monitor_interval(0, 1000)
        (50, 50, 0)
    """
    if requested is not None:
        return max(0, requested)
    return max(50, steps // 20)


@dataclass(frozen=True)
class Alarm:
    """One collapse alarm: when it fired, which rule, and what to do."""

    step: int
    rule: str
    message: str


class CollapseError(SSLCoreError, RuntimeError):
    """``train.on_collapse = "stop"`` and an alarm fired: training stopped, the last good checkpoint is kept."""

    def __init__(self, alarm: Alarm, checkpoint: str | None) -> None:
        self.alarm, self.checkpoint = alarm, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(f"collapse at step {alarm.step} ({alarm.rule}): {alarm.message}; training stopped and {kept}")


@dataclass
class MonitorHistory:
    """The monitors' curves over steps and the alarms, as written to ``metrics.json["monitors"]``."""

    every: int = 0
    samples: int = 0
    steps: list[int] = field(default_factory=list)
    curves: dict[str, list[float | None]] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    seconds: float = 0.0
    """Wall-clock time spent measuring (part of the run's training seconds)."""

    def record(self, step: int, values: Mapping[str, float]) -> None:
        """Add one measurement (curves that miss it get ``None`` there)."""
        self.steps.append(step)
        for name in set(self.curves) | set(values):
            curve = self.curves.setdefault(name, [None] * (len(self.steps) - 1))
            curve.append(values.get(name))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every, samples, steps, curves, alarms (step, rule, message), seconds."""
        alarms = [{"step": a.step, "rule": a.rule, "message": a.message} for a in self.alarms]
        return {"every": self.every, "samples": self.samples, "steps": list(self.steps),
                "curves": {k: list(v) for k, v in sorted(self.curves.items())}, "alarms": alarms,
                "seconds": self.seconds}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorHistory:
        """Back from :meth:`as_dict` (checkpoints keep the history so a resumed run continues its curves)."""
        alarms = [Alarm(int(a["step"]), str(a["rule"]), str(a["message"])) for a in data.get("alarms", [])]
        return cls(int(data.get("every", 0)), int(data.get("samples", 0)), [int(s) for s in data.get("steps", [])],
                   {k: list(v) for k, v in data.get("curves", {}).items()}, alarms,
                   float(data.get("seconds", 0.0)))  # fmt: skip


def _slice_items(dataset: Any, count: int, seed: int) -> list[Any]:
    """``count`` readable items of ``dataset`` at seeded positions (the first ones of an iterable source)."""
    from ._streaming import SkippedItem

    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        items = []
        for item in dataset:
            if not isinstance(item, SkippedItem):
                items.append(item)
            if len(items) == count:
                break
        return items
    generator = torch.Generator().manual_seed(seed + 104_729)
    order = torch.randperm(len(dataset), generator=generator)[: count + count // 8].tolist()
    items = [item for item in (dataset[i] for i in order) if not isinstance(item, SkippedItem)]
    return items[:count]


class TrainingMonitor:
    """Embeds fixed slices of the training (and test) data every ``every`` steps and raises alarms.

    Built once per run by the training loop; :meth:`due` says when to call :meth:`measure`.
    """

    def __init__(
        self,
        train: Any,
        collate: Callable[[Sequence[Any]], Any],
        *,
        every: int,
        samples: int,
        seed: int,
        device: torch.device,
        test: Any = None,
        batch_size: int = 256,
        last_step: int | None = None,
        precision: Precision = "fp32",
    ) -> None:
        self.every, self.samples, self.seed, self.device = every, samples, seed, device
        self.precision: Precision = precision
        self.last_step = last_step
        self._sources, self._collate, self._batch_size = (train, test), collate, batch_size
        self._batches: dict[str, list[Any]] | None = None
        self.history = MonitorHistory(every=every, samples=samples)
        self._first_rank: float | None = None
        self._fired: set[str] = set()

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's history: its curves, its first RankMe, its alarms (not repeated)."""
        self.history = MonitorHistory.from_dict(saved)
        ranks = [v for v in self.history.curves.get("monitor/rankme", []) if v is not None]
        self._first_rank = ranks[0] if ranks else None
        self._fired = {alarm.rule for alarm in self.history.alarms}

    def due(self, step: int) -> bool:
        """Whether ``step`` is a monitoring step: a multiple of ``every``, or the run's last step."""
        return self.every > 0 and (step % self.every == 0 or step == self.last_step)

    def _prepare(self) -> dict[str, list[Any]]:
        if self._batches is None:
            self._batches = {}
            for name, dataset in zip(("train", "test"), self._sources, strict=True):
                if dataset is None:
                    continue
                items = _slice_items(dataset, self.samples, self.seed)
                chunks = [items[i : i + self._batch_size] for i in range(0, len(items), self._batch_size)]
                self._batches[name] = [self._collate(chunk) for chunk in chunks if chunk]
        return self._batches

    def _embed(self, encoder: nn.Module, batches: list[Any]) -> tuple[Tensor, Tensor | None]:
        pooled, labels = [], []
        for batch in batches:
            moved = move_to_device(batch, self.device)
            with autocast_context(self.device, self.precision):  # the training precision: bf16 is ~3x cheaper
                output = encoder(moved)
            pooled.append(output.pooled.float().cpu())
            y = batch.get("y") if isinstance(batch, dict) else None
            labels.append(torch.as_tensor(y).reshape(-1) if y is not None else None)
        joined = torch.cat(pooled) if pooled else torch.zeros(0, 1)
        has_labels = labels and all(y is not None and y.numel() == len(p) for y, p in zip(labels, pooled, strict=True))
        return joined, (torch.cat([y for y in labels if y is not None]).long() if has_labels else None)

    def measure(self, step: int, encoder: nn.Module, objective: nn.Module) -> tuple[dict[str, float], list[Alarm]]:
        """Monitor values at ``step`` (``monitor/*``, ``health/*``) and the alarms that fire for the first time."""
        began = time.perf_counter()
        batches = self._prepare()
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                train_emb, train_y = self._embed(encoder, batches.get("train", []))
                test_emb, test_y = self._embed(encoder, batches["test"]) if "test" in batches else (None, None)
        finally:
            encoder.train(was_training)
        values: dict[str, float] = {}
        if len(train_emb) > 1:
            values["monitor/rankme"] = rankme(train_emb)
            values["monitor/std"] = normalized_std(train_emb)
        knn = _online_knn(train_emb, train_y, test_emb, test_y)
        if knn is not None:
            values["monitor/knn_top1"] = knn
        health = _objective_health(objective)
        values.update({f"health/{k}": v for k, v in health.items()})
        alarms = self._alarms(step, values, train_emb.shape[1], objective, health)
        self.history.record(step, values)
        self.history.alarms.extend(alarms)
        self.history.seconds += time.perf_counter() - began
        return values, alarms

    def _alarms(
        self, step: int, values: Mapping[str, float], dim: int, objective: nn.Module, health: Mapping[str, float]
    ) -> list[Alarm]:
        found: list[tuple[str, str]] = []
        rank = values.get("monitor/rankme")
        if rank is not None:
            if self._first_rank is None:
                self._first_rank = rank
            elif self._first_rank > 2 and rank < RANKME_DROP * self._first_rank:
                found.append(("rankme_drop", (
                    f"the embeddings' effective rank (RankMe) fell from {self._first_rank:.1f} to {rank:.1f}: "
                    "the encoder is collapsing onto a few directions. Known remedies: a lower learning rate, "
                    "stronger or more different views, a larger batch, a variance/covariance term (VICReg) or a "
                    "stop-gradient with a predictor (BYOL, SimSiam)"
                )))  # fmt: skip
        std = values.get("monitor/std")
        # The first measurement is the initialisation: a narrow random-init embedding (a
        # TS2Vec CNN's is) is not a collapse, so the std rule waits for training to act.
        trained = bool(self.history.steps) and step > self.history.steps[0]
        if std is not None and trained and std < STD_FLOOR / math.sqrt(max(dim, 1)):
            found.append(("std_zero", (
                f"the normalised embeddings' std is {std:.2g} (a spread-out embedding has about "
                f"{1 / math.sqrt(max(dim, 1)):.2g}): every sample maps to nearly the same point. Known remedies: "
                "negatives or a variance term in the objective, a lower learning rate, check that the views differ"
            )))  # fmt: skip
        rules = getattr(objective, "health_alarms", None)
        if callable(rules) and health:
            found.extend((str(rule), str(message)) for rule, message in rules(health))
        fresh = [Alarm(step, rule, message) for rule, message in found if rule not in self._fired]
        self._fired.update(alarm.rule for alarm in fresh)
        for alarm in fresh:
            warnings.warn(f"collapse alarm at step {alarm.step} ({alarm.rule}): {alarm.message}", stacklevel=3)
        return fresh


def _objective_health(objective: nn.Module) -> dict[str, float]:
    """The objective's ``health()`` scalars, when it defines that optional method."""
    method = getattr(objective, "health", None)
    return {str(k): float(v) for k, v in dict(method()).items()} if callable(method) else {}


def _online_knn(train: Tensor, train_y: Tensor | None, test: Tensor | None, test_y: Tensor | None) -> float | None:
    """kNN top-1 (k 20, T 0.07) from the train slice to the test slice (leave-one-out within train without one)."""
    from ._evaluation_functional import knn_predict

    if train_y is None or len(train) < 2:
        return None
    classes = int(train_y.max()) + 1
    if test is not None and test_y is not None and len(test):
        classes = max(classes, int(test_y.max()) + 1)
        scores = knn_predict(train, train_y, test, k=20, temperature=0.07, num_classes=classes)
        return float((scores.argmax(dim=1) == test_y).float().mean())
    similarity = F.normalize(train, dim=1) @ F.normalize(train, dim=1).T
    similarity.fill_diagonal_(-2.0)  # leave one out
    top, index = similarity.topk(min(20, len(train) - 1), dim=1)
    votes = torch.zeros(len(train), classes).scatter_add_(1, train_y[index], (top / 0.07).exp())
    return float((votes.argmax(dim=1) == train_y).float().mean())
