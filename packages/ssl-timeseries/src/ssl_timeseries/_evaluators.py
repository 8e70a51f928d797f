"""TS2Vec's classification protocol: max-pooled instance representations and an RBF SVM.

Example:
    >>> from ssl_core.testing import ToyEncoder, toy_labelled_batches
    >>> metrics = SVMEvaluator()(ToyEncoder(), toy_labelled_batches(4), toy_labelled_batches(2, seed=9))
    >>> 0.0 <= metrics["accuracy"] <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ssl_core import Features

from .functional import masked_max_pool

__all__ = ["SVMEvaluator", "fit_svm", "instance_representations"]

SVM_C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))
"""The C values TS2Vec searches (``tasks/_eval_protocols.fit_svm``)."""


def instance_representations(
    encoder: nn.Module, batches: Iterable[dict[str, Any]], pooling: Literal["max", "pooled"] = "max"
) -> tuple[np.ndarray, np.ndarray]:
    """Embed labelled batches with a frozen encoder: max over non-padded tokens (or ``Features.pooled``).

    The encoder runs in eval mode without gradients; each module's mode is restored.

    Example:
        >>> from ssl_core.testing import ToyEncoder, toy_labelled_batches
        >>> x, y = instance_representations(ToyEncoder(), toy_labelled_batches(2))
        >>> x.shape, y.shape
        ((32, 16), (32,))
    """
    modes = [(m, m.training) for m in encoder.modules()]
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    feats, labels = [], []
    encoder.eval()
    try:
        with torch.no_grad():
            for index, batch in enumerate(batches):
                if "y" not in batch:
                    raise KeyError(f"batch {index} has no 'y' labels (keys {sorted(batch)}); the SVM needs labels")
                moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
                out: Features = encoder(moved)
                if pooling == "max" and out.tokens is not None:
                    rep = masked_max_pool(out.tokens, out.padding_mask)
                else:
                    rep = out.pooled
                feats.append(rep.float().cpu().numpy())
                labels.append(torch.as_tensor(batch["y"]).cpu().numpy().reshape(-1))
    finally:
        for module, mode in modes:
            module.training = mode
    if not feats:
        raise ValueError("no batches to embed: the split is empty")
    x = np.concatenate(feats)
    if not np.isfinite(x).all():
        raise ValueError(f"{type(encoder).__name__} produced NaN or infinite representations")
    return x, np.concatenate(labels).astype(np.int64)


def fit_svm(features: np.ndarray, labels: np.ndarray, *, cv: int = 5, max_samples: int = 10000, seed: int = 0) -> Any:
    """TS2Vec's SVM: grid search of C (RBF, ``gamma="scale"``, 5-fold) or a plain SVC with ``C=inf``.

    The plain SVC is used when there are fewer than 5 samples per class on average or
    fewer than 50 in all, or when some class has fewer samples than folds.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(4, 1, (30, 2))]
        >>> y = np.r_[np.zeros(30), np.ones(30)]
        >>> fit_svm(x, y).score(x, y) > 0.9
        True
    """
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    classes, counts = np.unique(labels, return_counts=True)
    svm = SVC(C=float("inf"), gamma="scale")
    if len(features) // len(classes) < 5 or len(features) < 50 or counts.min() < cv:
        return svm.fit(features, labels)
    if len(features) > max_samples:
        features, _, labels, _ = train_test_split(
            features, labels, train_size=max_samples, random_state=seed, stratify=labels
        )
    search = GridSearchCV(svm, {"C": list(SVM_C_GRID), "kernel": ["rbf"], "gamma": ["scale"]}, cv=cv, n_jobs=1)
    search.fit(features, labels)
    return search.best_estimator_


class SVMEvaluator:
    """The TS2Vec classification protocol as an ssl-core evaluator.

    Instance representations are the max over time of the encoder's tokens (padding
    ignored; ``pooling = "pooled"`` uses ``Features.pooled``); an RBF SVC is fitted on
    the train split with TS2Vec's C grid search (:func:`fit_svm`) and scored on the test split.

    Returns ``accuracy`` and ``svm_c`` (the chosen C; ``inf`` is reported as ``-1``).

    Example:
        >>> SVMEvaluator(pooling="pooled").pooling
        'pooled'
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(self, pooling: Literal["max", "pooled"] = "max", cv: int = 5, max_samples: int = 10000) -> None:
        if pooling not in ("max", "pooled"):
            raise ValueError(f"pooling must be 'max' or 'pooled', got {pooling!r}")
        self.pooling, self.cv, self.max_samples = pooling, cv, max_samples

    def __call__(
        self, encoder: nn.Module, train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]
    ) -> dict[str, float]:
        x_train, y_train = instance_representations(encoder, train, self.pooling)
        x_test, y_test = instance_representations(encoder, test, self.pooling)
        svm = fit_svm(x_train, y_train, cv=self.cv, max_samples=self.max_samples)
        accuracy = float((svm.predict(x_test) == y_test).mean())
        c = float(svm.C)
        return {"accuracy": accuracy, "svm_c": c if np.isfinite(c) else -1.0}
