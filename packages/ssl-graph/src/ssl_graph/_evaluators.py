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

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Encoder, embed
from ssl_core.functional import warn_if_solver_capped

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

    Example:
        >>> import torch
        >>> emb = torch.cat([torch.zeros(10, 2), torch.ones(10, 2)])
        >>> y = torch.tensor([0] * 10 + [1] * 10)
        >>> m = torch.ones(20, dtype=torch.bool)
        >>> node_probe(emb, y, m, m, m, epochs=100)["accuracy"]
        1.0
    """
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
            val_acc = float(correct[val_mask].float().mean())
            test_acc = float(correct[test_mask].float().mean())
        if val_acc >= best_val:
            best_val, best_test = val_acc, test_acc
    return {"accuracy": best_test, "final_accuracy": test_acc, "val_accuracy": best_val}


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
        scores = []
        svm = SVC(random_state=42, max_iter=self.max_iter)
        with warn_if_solver_capped("graph.svm", self.max_iter):
            for train_idx, test_idx in StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(x, y):
                inner = int(min(5, np.bincount(y[train_idx]).min()))  # small classes: fewer inner folds
                if inner < 2:
                    raise ValueError(
                        "GraphSVMEvaluator: a class has fewer than 2 graphs in a training fold; use fewer folds"
                    )
                search = GridSearchCV(svm, {"C": list(self.c_grid)}, cv=inner, n_jobs=1)
                search.fit(x[train_idx], y[train_idx])
                scores.append(float((search.predict(x[test_idx]) == y[test_idx]).mean()))
        return {"accuracy": float(np.mean(scores)), "accuracy_std": float(np.std(scores))}
