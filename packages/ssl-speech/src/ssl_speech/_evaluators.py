"""The utterance probe (SUPERB keyword-spotting / speaker-ID style) with a choice of label column.

Example:
    >>> UtteranceProbeEvaluator(target="speaker").target
    'speaker'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from ssl_core import Encoder, LayerWeightedProbeEvaluator

__all__ = ["UtteranceProbeEvaluator"]


def _relabel(batches: Iterable[dict[str, Any]], target: str) -> Iterator[dict[str, Any]]:
    for batch in batches:
        if target not in batch:
            raise ValueError(f"speech.utterance_probe: batches have no {target!r} labels (keys: {sorted(batch)})")
        yield {**batch, "y": batch[target]}


class UtteranceProbeEvaluator:
    """Frozen encoder -> softmax-weighted sum of all hidden layers -> mean over frames -> two linear layers.

    The probe of SUPERB's utterance-level tasks (keyword spotting, speaker ID), via
    ssl-core's :class:`~ssl_core.LayerWeightedProbeEvaluator`. ``target`` picks the label
    column (FSDD batches carry ``digit`` and ``speaker``); the metrics are ``accuracy`` and
    the learned ``layer_weight_{i}``. ``target`` is the pipeline file's choice: it is not a
    ``data_params`` entry, so the dataset's ``info["target"]`` (FSDD's ``y`` column) never sets it.
    Fewer train utterances than classes, or test classes missing from the train split, give a
    warning naming ``speech.utterance_probe`` and the target (the probe still runs).

    Example:
        >>> UtteranceProbeEvaluator().epochs
        50
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        target: str = "y",
        epochs: int = 50,
        lr: float = 1e-3,
        hidden_dim: int = 256,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        self.target, self.epochs = target, epochs
        self.probe = LayerWeightedProbeEvaluator(
            epochs=epochs, lr=lr, hidden_dim=hidden_dim, weight_decay=weight_decay, seed=seed
        )
        # small or lopsided splits (fewer utterances than classes, a class missing from train) warn under this name
        self.probe.component = f"speech.utterance_probe (target {target!r})"

    def __call__(
        self, encoder: Encoder, train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]
    ) -> dict[str, float]:
        metrics = self.probe(
            encoder,
            list(_relabel(train, self.target)),
            list(_relabel(test, self.target)),
        )
        metrics["accuracy"] = metrics.pop("layer_probe_top1")
        return metrics
