"""GraphMAE's evaluation protocols: a logistic-regression node probe and a cross-validated graph SVM.

Example:
    >>> from ssl_graph import GATEncoder, synthetic
    >>> splits = synthetic(num_nodes=300, num_classes=3, in_dim=8)
    >>> enc = GATEncoder(in_dim=8, hidden_dim=16, heads=2)
    >>> scores = NodeProbeEvaluator(epochs=50)(enc, [splits.train[0]], [splits.test[0]])
    >>> 0.0 <= scores["accuracy"] <= 1.0
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Encoder, embed
from ssl_core.functional import warn_if_few_labels, warn_if_solver_capped

__all__ = ["GraphSVMEvaluator", "NodeProbeEvaluator", "node_probe"]

SVM_MAX_ITER = 10_000_000
"""libsvm's iteration cap per fit (sklearn's default is none); as ssl-timeseries' TS2Vec protocol."""


def _device_of(encoder: object) -> torch.device:
    param = next(encoder.parameters(), None) if isinstance(encoder, nn.Module) else None
    return param.device if param is not None else torch.device("cpu")


def node_probe(
    embeddings: Tensor,
    labels: Tensor,
    train_mask: Tensor,
    val_mask: Tensor,
    test_mask: Tensor,
    *,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    epochs: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """GraphMAE's linear probe: logistic regression (Adam) on frozen node embeddings, full batch.

    Trains on ``train_mask`` for ``epochs`` epochs; after each epoch scores the validation
    and test nodes; returns the test accuracy at the last epoch with the best validation
    accuracy (ties go to the later epoch, as GraphMAE's ``>=``), the final test accuracy and
    the best validation accuracy.

    Small graphs adapt with a warning naming ``graph.node_probe``: fewer train nodes than
    classes or test classes without a train node still probe; with no validation node the
    last epoch is taken (``val_accuracy`` is NaN); with no test node the accuracies are NaN.

    Raises:
        ValueError: ``train_mask`` selects no node (there is nothing to fit).

    Example:
        >>> import torch
        >>> emb = torch.cat([torch.zeros(10, 2), torch.ones(10, 2)])
        >>> y = torch.tensor([0] * 10 + [1] * 10)
        >>> m = torch.ones(20, dtype=torch.bool)
        >>> node_probe(emb, y, m, m, m, epochs=100)["accuracy"]
        1.0
    """
    if not bool(train_mask.any()):
        raise ValueError("graph.node_probe: train_mask selects no node; the probe needs labelled train nodes")
    warn_if_few_labels("graph.node_probe", labels[train_mask], labels[test_mask])
    has_val, has_test = bool(val_mask.any()), bool(test_mask.any())
    if not has_val:
        warnings.warn(
            "graph.node_probe: val_mask selects no node, so the last epoch is scored (no model selection)",
            UserWarning,
            stacklevel=2,
        )
    if not has_test:
        warnings.warn(
            "graph.node_probe: test_mask selects no node; the test accuracy is NaN", UserWarning, stacklevel=2
        )
    nan = float("nan")
    generator = torch.Generator().manual_seed(seed)
    num_classes = int(labels.max()) + 1
    head = nn.Linear(embeddings.shape[1], num_classes).to(embeddings.device)
    with torch.no_grad():  # nn.Linear's default init, from a local generator
        bound = 1.0 / embeddings.shape[1] ** 0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=generator) * 2 * bound - bound)
        head.bias.copy_(torch.rand(head.bias.shape, generator=generator) * 2 * bound - bound)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    best_val, best_test, test_acc = -1.0, 0.0, 0.0
    train_x, train_y = embeddings[train_mask], labels[train_mask]
    for _ in range(epochs):
        loss = F.cross_entropy(head(train_x), train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            correct = head(embeddings).argmax(dim=1) == labels
            val_acc = float(correct[val_mask].float().mean()) if has_val else 0.0
            test_acc = float(correct[test_mask].float().mean()) if has_test else nan
        if val_acc >= best_val:
            best_val, best_test = val_acc, test_acc
    return {"accuracy": best_test, "final_accuracy": test_acc, "val_accuracy": best_val if has_val else nan}


class NodeProbeEvaluator:
    """GraphMAE's node-classification protocol on a node-level graph (Planetoid's public split).

    Embeds the whole graph with the frozen encoder (eval mode), then :func:`node_probe`
    with the given seeds; with several probe seeds the result is their mean (``accuracy``)
    and standard deviation (``accuracy_std``). Pretraining seeds (the paper's 20 runs)
    are the benchmark's business.

    Example:
        >>> NodeProbeEvaluator().epochs
        300
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(self, lr: float = 0.01, weight_decay: float = 1e-4, epochs: int = 300, seeds: int = 1) -> None:
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        self.lr, self.weight_decay, self.epochs, self.seeds = lr, weight_decay, epochs, seeds

    def __call__(
        self, encoder: Encoder, train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]
    ) -> dict[str, float]:
        batch = next(iter(train), None)
        if batch is None:
            raise ValueError("NodeProbeEvaluator got no graph: the train split is empty")
        missing = [k for k in ("y", "train_mask", "val_mask", "test_mask") if k not in batch]
        if missing or "batch" in batch:
            raise ValueError(
                "NodeProbeEvaluator needs a node-level graph with 'y', 'train_mask', 'val_mask' and 'test_mask' "
                f"(missing: {', '.join(missing) or 'none'}); for graph classification use graph.svm"
            )
        embeddings = embed(encoder, [batch])[0].to(_device_of(encoder))
        device = embeddings.device
        tensors = [batch[k].to(device) for k in ("y", "train_mask", "val_mask", "test_mask")]
        runs = [
            node_probe(
                embeddings,
                *tensors,
                lr=self.lr,
                weight_decay=self.weight_decay,
                epochs=self.epochs,
                seed=seed,
            )
            for seed in range(self.seeds)
        ]
        out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        if self.seeds > 1:
            out["accuracy_std"] = float(np.std([r["accuracy"] for r in runs]))
        return out


class GraphSVMEvaluator:
    """GraphMAE's graph-classification protocol: pooled embeddings, SVC with a C grid, 10-fold CV.

    For each of ``folds`` stratified folds (shuffled with ``seed``) the C of an RBF SVC is
    chosen by an inner 5-fold grid search on the training part; ``accuracy`` is the mean
    test-fold accuracy and ``accuracy_std`` its standard deviation. Uses the train split
    only (GraphMAE scores on all graphs). Each libsvm fit stops after ``max_iter``
    iterations (GraphMAE sets no cap; a ``RuntimeWarning`` says when the cap was hit).

    Small data sets adapt with a warning naming ``graph.svm``: when the smallest class has
    fewer graphs than ``folds``, it sets the number of outer folds; an inner search with
    fewer than 2 graphs of some class becomes a plain ``SVC(C=1)``; with a single graph in
    some class no cross-validation is possible and ``accuracy`` is that of a plain
    ``SVC(C=1)`` on the graphs it was fitted on (``accuracy_std`` 0); with a single class
    it is 1.0.

    Example:
        >>> GraphSVMEvaluator().c_grid
        (0.001, 0.01, 0.1, 1.0, 10.0)
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        folds: int = 10,
        c_grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
        seed: int = 0,
        max_iter: int = SVM_MAX_ITER,
    ) -> None:
        if max_iter < 1:
            raise ValueError(f"graph.svm: max_iter must be a positive number of solver iterations, got {max_iter}")
        self.folds, self.c_grid, self.seed = folds, tuple(float(c) for c in c_grid), seed
        self.max_iter = max_iter

    def __call__(
        self, encoder: Encoder, train: Iterable[dict[str, Any]], test: Iterable[dict[str, Any]]
    ) -> dict[str, float]:
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.svm import SVC

        batches = list(train)
        if any("batch" not in b for b in batches):
            raise ValueError("GraphSVMEvaluator needs graph-level batches (a 'batch' vector); use graph.node_probe")
        features, labels = embed(encoder, batches)
        x, y = features.numpy(), labels.numpy()
        warn_if_few_labels("graph.svm", y)
        smallest = int(np.unique(y, return_counts=True)[1].min())
        if len(np.unique(y)) < 2:  # warned above; SVC cannot fit one class, the constant prediction is exact
            return {"accuracy": 1.0, "accuracy_std": 0.0}
        svm = SVC(random_state=42, max_iter=self.max_iter)
        plain = SVC(C=1.0, random_state=42, max_iter=self.max_iter)
        if smallest < 2:
            warnings.warn(
                "graph.svm: a class has a single graph, so no cross-validation is possible; the accuracy is that of "
                "a plain SVC(C=1) on the graphs it was fitted on (a training accuracy)",
                UserWarning,
                stacklevel=2,
            )
            with warn_if_solver_capped("graph.svm", self.max_iter):
                return {"accuracy": float(plain.fit(x, y).score(x, y)), "accuracy_std": 0.0}
        folds = min(self.folds, smallest)
        if folds < self.folds:
            warnings.warn(
                f"graph.svm: the smallest class has {smallest} graphs, fewer than folds={self.folds}; "
                f"using {folds}-fold cross-validation",
                UserWarning,
                stacklevel=2,
            )
        scores: list[float] = []
        plain_folds = 0
        with warn_if_solver_capped("graph.svm", self.max_iter):
            for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(x, y):
                inner = int(min(5, np.unique(y[train_idx], return_counts=True)[1].min()))  # small classes: fewer
                if inner < 2:  # no inner search possible: a plain SVC(C=1)
                    plain_folds += 1
                    model = plain.fit(x[train_idx], y[train_idx])
                else:
                    model = GridSearchCV(svm, {"C": list(self.c_grid)}, cv=inner, n_jobs=1)
                    model.fit(x[train_idx], y[train_idx])
                scores.append(float((model.predict(x[test_idx]) == y[test_idx]).mean()))
        if plain_folds:
            warnings.warn(
                f"graph.svm: in {plain_folds} of {folds} folds a class had a single training graph, so C was not "
                "searched there (plain SVC(C=1))",
                UserWarning,
                stacklevel=2,
            )
        return {"accuracy": float(np.mean(scores)), "accuracy_std": float(np.std(scores))}
