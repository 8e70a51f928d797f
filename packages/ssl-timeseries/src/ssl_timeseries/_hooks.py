"""A hook plugin that prints TS2Vec's published accuracy beside ours after the SVM evaluation.

Registered in the ``ssl_core.hooks`` group; ssl-core imports it when a run starts.
It only speaks for runs that train TS2Vec (the one objective is ``timeseries.ts2vec``)
on a ``timeseries.ucr`` problem with a published figure (:data:`~ssl_timeseries.PUBLISHED_TS2VEC`),
and only after ``timeseries.svm``: for any other objective the published TS2Vec figure
is not a comparison. Like every run hook it fires on rank 0 only.

Example:
    >>> hook = PublishedFigure()
    >>> hook.ssl_on_train_start({"data": {"name": "timeseries.ucr", "dataset": "GunPoint"},
    ...                          "objective": {"name": "timeseries.ts2vec"}})
    >>> hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.97})
    timeseries.svm on GunPoint: accuracy 0.9700 (published TS2Vec: 0.980)
    >>> hook.ssl_on_train_start({"data": {"name": "timeseries.ucr", "dataset": "GunPoint"},
    ...                          "objective": {"name": "timeseries.mvp"}})
    >>> hook.ssl_on_evaluate_end("timeseries.svm", {"accuracy": 0.97})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssl_core import hookimpl

from ._recipes import PUBLISHED_TS2VEC

__all__ = ["PublishedFigure", "published"]


def _trains_ts2vec(config: Mapping[str, Any]) -> bool:
    """The resolved config's objective is ``timeseries.ts2vec`` alone (one table, or a list of one)."""
    objective = config.get("objective")
    if isinstance(objective, list) and len(objective) == 1:
        objective = objective[0]
    return isinstance(objective, Mapping) and objective.get("name") == "timeseries.ts2vec"


class PublishedFigure:
    """Remembers the run's dataset and prints the published TS2Vec accuracy after ``timeseries.svm``.

    ``dataset`` is set only for TS2Vec runs on ``timeseries.ucr``; it is reset at every run start.
    """

    def __init__(self) -> None:
        self.dataset: str | None = None

    @hookimpl
    def ssl_on_train_start(self, config: Mapping[str, Any]) -> None:
        self.dataset = None
        if not isinstance(config, Mapping) or not _trains_ts2vec(config):
            return
        data = config.get("data", {})
        if isinstance(data, Mapping) and data.get("name") == "timeseries.ucr":
            self.dataset = str(data.get("dataset", "GunPoint"))

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
