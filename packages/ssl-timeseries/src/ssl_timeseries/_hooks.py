"""A hook plugin that prints TS2Vec's published accuracy beside ours after the SVM evaluation.

Registered in the ``ssl_core.hooks`` group; ssl-core imports it when a run starts.
It only speaks for runs on ``timeseries.ucr`` problems with a published figure
(:data:`~ssl_timeseries.PUBLISHED_TS2VEC`) and only after ``timeseries.svm``.

Example:
    >>> hook = PublishedFigure()
    >>> hook.ssl_on_train_start({"data": {"name": "timeseries.ucr", "dataset": "GunPoint"}})
    >>> hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.97})
    timeseries.svm on GunPoint: accuracy 0.9700 (published TS2Vec: 0.980)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssl_core import hookimpl

from ._recipes import PUBLISHED_TS2VEC

__all__ = ["PublishedFigure", "published"]


class PublishedFigure:
    """Remembers the run's dataset and prints the published TS2Vec accuracy after ``timeseries.svm``."""

    def __init__(self) -> None:
        self.dataset: str | None = None

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any]) -> None:
        data = config.get("data", {}) if isinstance(config, Mapping) else {}
        is_ucr = isinstance(data, Mapping) and data.get("name") == "timeseries.ucr"
        self.dataset = str(data.get("dataset", "GunPoint")) if is_ucr else None

    @hookimpl
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        if evaluator != "timeseries.svm" or self.dataset not in PUBLISHED_TS2VEC or "accuracy" not in metrics:
            return
        print(
            f"timeseries.svm on {self.dataset}: accuracy {metrics['accuracy']:.4f} "
            f"(published TS2Vec: {PUBLISHED_TS2VEC[self.dataset]:.3f})"
        )


published = PublishedFigure()
"""The instance registered as the ``timeseries.published`` hook plugin."""
