"""TS2Vec's classification protocol: max-pooled instance representations and an RBF SVM.

Example:
    >>> from ssl_core.testing import ToyEncoder, toy_labelled_batches
    >>> metrics = SVMEvaluator()(ToyEncoder(), toy_labelled_batches(4), toy_labelled_batches(2, seed=9))
    >>> 0.0 <= metrics["accuracy"] <= 1.0
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ssl_core import Features
from ssl_core.functional import warn_if_few_labels, warn_if_solver_capped

from .functional import masked_max_pool

__all__ = ["SVMEvaluator", "fit_svm", "instance_representations"]

SVM_C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))
"""The C values TS2Vec searches (``tasks/_eval_protocols.fit_svm``)."""

SVM_MAX_ITER = 10_000_000
"""libsvm's iteration cap: the value TS2Vec's grid search passes (``max_iter: [10000000]``).

TS2Vec's plain ``SVC(C=inf)`` (small train sets) has no cap; with ``C=inf`` and two
identical representations of different classes (a collapsed or random encoder) libsvm
then never stops, so :func:`fit_svm` caps both fits.
"""


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


def fit_svm(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    cv: int = 5,
    max_samples: int = 10000,
    seed: int = 0,
    max_iter: int = SVM_MAX_ITER,
    name: str = "timeseries.svm",
) -> Any:
    """TS2Vec's SVM: grid search of C (RBF, ``gamma="scale"``, 5-fold) or a plain SVC with ``C=inf``.

    The plain SVC is used, as in TS2Vec, when there are fewer than 5 samples per class on
    average or fewer than 50 in all. Otherwise, when some class has fewer samples than
    ``cv`` folds, the grid search uses as many folds as that class has samples (a warning
    naming ``name`` says so), and with a single sample in some class it falls back to the
    plain SVC (with a warning). A train split of a single class gives a warning and a
    model that always predicts that class (an SVC cannot be fitted to one class).
    Every libsvm fit stops after ``max_iter`` iterations (:data:`SVM_MAX_ITER`, TS2Vec's
    grid-search cap, by default); when a fit hits the cap a ``RuntimeWarning`` naming
    ``name`` says so, and the result is the unconverged SVM.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(4, 1, (30, 2))]
        >>> y = np.r_[np.zeros(30), np.ones(30)]
        >>> fit_svm(x, y).score(x, y) > 0.9
        True
    """
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    if max_iter < 1:
        raise ValueError(f"{name}: max_iter must be a positive number of solver iterations, got {max_iter}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        from sklearn.dummy import DummyClassifier

        warnings.warn(
            f"{name}: the train split holds a single class ({classes[0] if len(classes) else 'none'}); "
            "the model always predicts it and its accuracy means little",
            UserWarning,
            stacklevel=2,
        )
        constant = DummyClassifier(strategy="most_frequent").fit(features, labels)
        constant.C = float("nan")  # no C was chosen
        return constant
    svm = SVC(C=float("inf"), gamma="scale", max_iter=max_iter)
    folds = min(cv, int(counts.min()))
    if len(features) // len(classes) >= 5 and len(features) >= 50 and folds < cv:  # TS2Vec's rule keeps the search
        if folds < 2:
            warnings.warn(
                f"{name}: a class has a single train sample, fewer than cv={cv} folds; no C search is possible, "
                "so a plain SVC(C=inf) is fitted",
                UserWarning,
                stacklevel=2,
            )
        else:
            warnings.warn(
                f"{name}: the smallest class has {folds} train samples, fewer than cv={cv}; "
                f"the C search uses {folds}-fold cross-validation",
                UserWarning,
                stacklevel=2,
            )
    with warn_if_solver_capped(name, max_iter):
        if len(features) // len(classes) < 5 or len(features) < 50 or folds < 2:
            return svm.fit(features, labels)
        if len(features) > max_samples:
            features, _, labels, _ = train_test_split(
                features, labels, train_size=max_samples, random_state=seed, stratify=labels
            )
        search = GridSearchCV(svm, {"C": list(SVM_C_GRID), "kernel": ["rbf"], "gamma": ["scale"]}, cv=folds, n_jobs=1)
        search.fit(features, labels)
        return search.best_estimator_


class SVMEvaluator:
    """The TS2Vec classification protocol as an ssl-core evaluator.

    Instance representations are the max over time of the encoder's tokens (padding
    ignored; ``pooling = "pooled"`` uses ``Features.pooled``); an RBF SVC is fitted on
    the train split with TS2Vec's C grid search (:func:`fit_svm`) and scored on the test split.

    Returns ``accuracy`` and ``svm_c`` (the chosen C; ``inf`` is reported as ``-1``, and
    ``0`` when no SVC could be fitted because the train split holds a single class).
    Fewer train samples than classes, or test classes missing from the train split, give
    a warning naming ``timeseries.svm``; small classes reduce the search's folds (see
    :func:`fit_svm`).
    ``max_iter`` caps each libsvm fit (TS2Vec's 10,000,000 by default), so a weak encoder
    cannot make the evaluation run forever; a ``RuntimeWarning`` says when the cap was hit.

    Example:
        >>> SVMEvaluator(pooling="pooled").pooling
        'pooled'
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        pooling: Literal["max", "pooled"] = "max",
        cv: int = 5,
        max_samples: int = 10000,
        max_iter: int = SVM_MAX_ITER,
    ) -> None:
        if pooling not in ("max", "pooled"):
            raise ValueError(f"pooling must be 'max' or 'pooled', got {pooling!r}")
        if max_iter < 1:
            raise ValueError(f"timeseries.svm: max_iter must be a positive number of solver iterations, got {max_iter}")
        self.pooling, self.cv, self.max_samples, self.max_iter = pooling, cv, max_samples, max_iter

    def __call__(
        self, encoder: nn.Module, train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]
    ) -> dict[str, float]:
        x_train, y_train = instance_representations(encoder, train, self.pooling)
        x_test, y_test = instance_representations(encoder, test, self.pooling)
        warn_if_few_labels("timeseries.svm", y_train, y_test)
        svm = fit_svm(x_train, y_train, cv=self.cv, max_samples=self.max_samples, max_iter=self.max_iter)
        accuracy = float((svm.predict(x_test) == y_test).mean())
        c = float(svm.C)
        return {"accuracy": accuracy, "svm_c": -1.0 if np.isposinf(c) else 0.0 if np.isnan(c) else c}
