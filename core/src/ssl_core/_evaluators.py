"""Generic evaluators that score a frozen encoder: weighted kNN, linear probe, layer-weighted probe.

Every evaluator embeds the labelled train and test splits once with the frozen
encoder (see :func:`embed` and :func:`embed_layers`), then works on those
features only. The tensor arithmetic lives in :mod:`ssl_core._evaluation_functional`.

All evaluators also take keyword-only ``device`` (default: the encoder's device),
``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``; for embedding only),
``num_classes`` (default: the largest label over both splits plus one; the
pipeline passes the dataset's count) and ``feature_storage`` (``"auto"``: a split
whose float32 features exceed :data:`~ssl_core._feature_buffer.FLOAT16_ABOVE_BYTES`
is held as float16; ``"float32"``; ``"float16"``). Features are written batch by batch
into one preallocated tensor, and every kernel reading them works in float32 chunks.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._device import Precision, autocast_context, move_to_device
from ._evaluation_functional import (
    BANK_BATCH_SIZE,
    cosine_top_k,
    infer_num_classes,
    inverse_row_norms,
    knn_vote,
    layer_weighted_sum,
    masked_mean,
    standardize,
    topk_accuracy,
    topk_hits,
    warn_if_few_labels,
)
from ._feature_buffer import FeatureBuffer, FeatureStorage
from ._protocols import Batch, Encoder, Features

__all__ = [
    "KNNEvaluator",
    "LayerWeightedProbeEvaluator",
    "LinearProbeEvaluator",
    "embed",
    "embed_layers",
]

# --------------------------------------------------------------------------- embedding


def embed(
    encoder: Encoder,
    batches: Iterable[Batch],
    *,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
    feature_storage: FeatureStorage = "float32",
) -> tuple[Tensor, Tensor]:
    """Run a frozen encoder over labelled batches; return pooled features and labels.

    The encoder runs in eval mode under :func:`torch.inference_mode` and each of its
    modules gets its previous train/eval mode back afterwards. Tensors in each batch
    are moved to ``device`` (default: the device of the encoder's parameters, else CPU).
    Features are copied batch by batch into one preallocated tensor (sized from
    ``len(batches.dataset)`` when the batches come from a DataLoader), held in float32,
    or in float16 under ``feature_storage="float16"`` or ``"auto"`` for a large split
    (:data:`~ssl_core._feature_buffer.FLOAT16_ABOVE_BYTES`).

    Returns:
        ``(features [N, D] float32 (or float16, see above) on CPU, labels [N] int64 on CPU)``.

    Example:
        >>> from ssl_core._bases import EncoderBase
        >>> class Flat(EncoderBase):
        ...     def forward(self, batch, token_mask=None):
        ...         return Features(pooled=batch["x"].flatten(1))
        >>> feats, labels = embed(Flat(), [{"x": torch.ones(3, 2, 2), "y": torch.tensor([0, 1, 1])}])
        >>> tuple(feats.shape), labels.tolist()
        ((3, 4), [0, 1, 1])
    """

    def pooled(features: Features, batch: Batch) -> Tensor:
        return features.pooled

    return _embed_with(encoder, batches, pooled, device=device, precision=precision, storage=feature_storage)


def embed_layers(
    encoder: Encoder,
    batches: Iterable[Batch],
    *,
    device: torch.device | str | None = None,
    precision: Precision = "fp32",
    feature_storage: FeatureStorage = "float32",
) -> tuple[Tensor, Tensor]:
    """Like :func:`embed`, but return every hidden layer, mean-pooled over tokens.

    Layers shaped ``[B, T, D]`` are averaged over the non-padded tokens (using
    ``Features.padding_mask``); layers shaped ``[B, D]`` pass through.

    Returns:
        ``(layer features [N, L, D] float32 (or float16, as in :func:`embed`) on CPU, labels [N] int64 on CPU)``.

    Example:
        >>> from ssl_core._bases import EncoderBase
        >>> class TwoLayers(EncoderBase):
        ...     def forward(self, batch, token_mask=None):
        ...         x = batch["x"]  # [B, T, D]
        ...         return Features(pooled=x.mean(1), layers=(x, 2 * x))
        >>> feats, _ = embed_layers(TwoLayers(), [{"x": torch.ones(3, 5, 4), "y": torch.zeros(3)}])
        >>> tuple(feats.shape)
        (3, 2, 4)
    """

    def pooled_layers(features: Features, batch: Batch) -> Tensor:
        if features.layers is None or len(features.layers) == 0:
            raise ValueError(
                f"{type(encoder).__name__} returned no hidden layers (Features.layers is None); "
                "the layer-weighted probe needs an encoder that fills Features.layers"
            )
        pooled = [_pool_layer(layer, features.padding_mask, index) for index, layer in enumerate(features.layers)]
        widest = max(p.shape[-1] for p in pooled)  # e.g. an MLP's hidden and output widths differ
        pooled = [torch.nn.functional.pad(p, (0, widest - p.shape[-1])) for p in pooled]
        return torch.stack(pooled, dim=1)

    return _embed_with(encoder, batches, pooled_layers, device=device, precision=precision, storage=feature_storage)


def _pool_layer(layer: Tensor, padding_mask: Tensor | None, index: int) -> Tensor:
    if layer.ndim == 2:
        return layer
    if layer.ndim == 3:
        if padding_mask is not None and padding_mask.shape != layer.shape[:2]:
            raise ValueError(
                f"hidden layer {index} has shape {tuple(layer.shape)} but padding_mask has shape "
                f"{tuple(padding_mask.shape)}; they must agree on [B, T]"
            )
        return masked_mean(layer, padding_mask)
    raise ValueError(f"hidden layer {index} must be [B, T, D] or [B, D], got {tuple(layer.shape)}")


@dataclass(frozen=True)
class _SharedEmbedding:
    """A cached embedding, holding its encoder and batches so that their ``id`` cannot be reused meanwhile."""

    encoder: object
    batches: object
    result: tuple[Tensor, Tensor]


_SHARED: contextvars.ContextVar[dict[tuple[Any, ...], _SharedEmbedding] | None] = contextvars.ContextVar(
    "ssl_core_shared_embeddings", default=None
)


@contextmanager
def shared_embeddings() -> Iterator[None]:
    """Inside the block, embedding the same split with the same frozen encoder happens once.

    :func:`ssl_core.evaluate` opens one around its evaluators, so a kNN and a linear probe
    on one run share the features of each split instead of running the encoder twice.
    A request for ``feature_storage="auto"`` is served by features already held in
    float32 or float16; ``"float32"`` and ``"float16"`` by features held in that dtype.

    Example:
        >>> with shared_embeddings():
        ...     pass
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


_SERVES: dict[str, tuple[torch.dtype, ...]] = {
    "auto": (torch.float32, torch.float16),
    "float32": (torch.float32,),
    "float16": (torch.float16,),
}


def _embed_with(
    encoder: Encoder,
    batches: Iterable[Batch],
    extract: Callable[[Features, Batch], Tensor],
    *,
    device: torch.device | str | None,
    precision: Precision,
    storage: FeatureStorage,
) -> tuple[Tensor, Tensor]:
    shared = _SHARED.get()
    key = (id(encoder), id(batches), extract.__name__, str(device), precision)
    for dtype in _SERVES.get(storage, ()):
        if shared is not None and (*key, dtype) in shared:
            return shared[(*key, dtype)].result
    result = _embed_fresh(encoder, batches, extract, device=device, precision=precision, storage=storage)
    if shared is not None:
        shared[(*key, result[0].dtype)] = _SharedEmbedding(encoder, batches, result)
    return result


def _embed_fresh(
    encoder: Encoder,
    batches: Iterable[Batch],
    extract: Callable[[Features, Batch], Tensor],
    *,
    device: torch.device | str | None,
    precision: Precision,
    storage: FeatureStorage,
) -> tuple[Tensor, Tensor]:
    target = torch.device(device) if device is not None else _module_device(encoder)
    autocast = autocast_context(target, precision)  # validates precision before any batch is drawn
    features_buffer = FeatureBuffer(storage, expected_rows=_expected_rows(batches))  # validates storage
    name = type(encoder).__name__
    label_chunks: list[Tensor] = []
    with _frozen(encoder), torch.inference_mode():
        for index, batch in enumerate(batches):
            if not isinstance(batch, Mapping) or "y" not in batch:
                keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                raise KeyError(f"batch {index} has no 'y' labels key (the evaluators need labels); got keys {keys}")
            labels = _as_class_indices(batch["y"], index)
            moved = move_to_device(dict(batch), target)
            with autocast:
                features = encoder(moved)
            values = extract(features, moved).float()
            if values.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"{name} returned {values.shape[0]} feature rows for batch {index} with {labels.shape[0]} labels"
                )
            if not torch.isfinite(values).all():
                raise ValueError(f"{name} produced NaN or infinite features in batch {index}")
            features_buffer.append(values)
            label_chunks.append(labels)
    if not label_chunks:
        raise ValueError("no batches to embed (the split is empty); evaluators need a non-empty train and test split")
    # The buffer was allocated outside inference mode, and concatenating outside it yields ordinary tensors:
    # autograd can use both as probe inputs.
    return features_buffer.result(), torch.cat(label_chunks)


def _expected_rows(batches: Iterable[Batch]) -> int | None:
    """Rows a DataLoader over a sized dataset will yield at most (skipped items make fewer); else unknown."""
    dataset = getattr(batches, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an IterableDataset without a length
        return None


def _module_device(encoder: object) -> torch.device:
    if isinstance(encoder, nn.Module):
        for tensor in [*encoder.parameters(), *encoder.buffers()]:
            return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _frozen(encoder: object) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    if not isinstance(encoder, nn.Module):
        yield
        return
    modes = [(module, module.training) for module in encoder.modules()]
    encoder.eval()
    try:
        yield
    finally:
        for module, was_training in modes:
            module.training = was_training


def _as_class_indices(raw: Any, index: int) -> Tensor:
    labels = torch.as_tensor(raw).detach().cpu()
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"batch {index}: 'y' must hold one class index per sample, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"batch {index}: 'y' must hold integer class indices, got non-integer values")
    return labels.long()


def _split_features(
    encoder: Encoder,
    train: Iterable[Batch],
    test: Iterable[Batch],
    embedder: Callable[..., tuple[Tensor, Tensor]],
    device: torch.device | str | None,
    precision: Precision,
    num_classes: int | None,
    storage: FeatureStorage = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Embed both splits, naming the split in errors, and settle the number of classes."""
    splits = []
    for split_name, batches in (("train", train), ("test", test)):
        try:
            splits.append(embedder(encoder, batches, device=device, precision=precision, feature_storage=storage))
        except ValueError as error:
            raise ValueError(f"{split_name} split: {error}") from error
        except KeyError as error:
            raise KeyError(f"{split_name} split: {error.args[0]}") from error
    (train_feats, train_labels), (test_feats, test_labels) = splits
    inferred = infer_num_classes(train_labels, test_labels)
    if num_classes is not None and inferred > num_classes:
        raise ValueError(f"labels go up to {inferred - 1} but num_classes is {num_classes}")
    return train_feats, train_labels, test_feats, test_labels, num_classes or inferred


# --------------------------------------------------------------------------- probe training


def _train_adamw(
    head: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    lr: float,
    param_groups: list[dict[str, Any]],
    batch_size: int,
    seed: int,
) -> None:
    """Mini-batch AdamW with a cosine learning-rate decay; shuffling drawn from ``seed``."""
    optimizer = torch.optim.AdamW(param_groups, lr=lr)
    steps_per_epoch = -(-inputs.shape[0] // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
        for rows in order.split(batch_size):
            loss = nn.functional.cross_entropy(head(inputs[rows].float()), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    head.eval()


@torch.no_grad()
def _predict(head: nn.Module, inputs: Tensor, batch_size: int) -> Tensor:
    return torch.cat([head(chunk.float()) for chunk in inputs.split(batch_size)])


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global CPU generator for parameter init without leaking the change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


# --------------------------------------------------------------------------- evaluators


class KNNEvaluator:
    """Weighted k-nearest-neighbour classifier on frozen features (DINO protocol).

    Reports ``knn_top1@{k}`` for each ``k`` (and ``knn_top5@{k}`` when there are at
    least 5 classes). A ``k`` larger than the train split is clipped to its size, with a
    warning; the metric keys keep the ``k`` asked for, so keys stay stable across data
    sizes. Splits with fewer train samples than classes, or test classes missing from the
    train split, give a warning too (see :func:`~ssl_core.functional.warn_if_few_labels`).

    Memory stays bounded on large splits: the neighbours of ``batch_size`` test rows at a
    time are found among ``bank_batch_size`` train rows at a time (a running top-k,
    similarities in float32 even for float16 features), once for the largest ``k``; every
    ``k`` votes from those neighbours, and only hit counts are kept.

    Example:
        >>> evaluator = KNNEvaluator(k=(10, 20))
        >>> metrics = evaluator(encoder, train_loader, test_loader)  # doctest: +SKIP
        >>> metrics["knn_top1@20"]  # doctest: +SKIP
        0.98
    """

    higher_is_better: ClassVar[bool] = True
    component: str = "core.knn"
    """The name warnings give this evaluator."""

    def __init__(
        self,
        k: int | Sequence[int] = (20, 200),
        temperature: float = 0.07,
        batch_size: int = 1024,
        *,
        device: torch.device | str | None = None,
        precision: Precision = "fp32",
        num_classes: int | None = None,
        feature_storage: FeatureStorage = "auto",
        bank_batch_size: int = BANK_BATCH_SIZE,
    ) -> None:
        self.k: tuple[int, ...] = (k,) if isinstance(k, int) else tuple(k)
        if not self.k or any(value < 1 for value in self.k):
            raise ValueError(f"k must be one or more integers >= 1, got {k}")
        _check_positive(temperature=temperature, batch_size=batch_size, bank_batch_size=bank_batch_size)
        self.temperature = temperature
        self.batch_size = batch_size
        self.device = device
        self.precision: Precision = precision
        self.num_classes = num_classes
        self.feature_storage: FeatureStorage = feature_storage
        self.bank_batch_size = bank_batch_size

    def __call__(self, encoder: Encoder, train: Iterable[Batch], test: Iterable[Batch]) -> dict[str, float]:
        train_feats, train_labels, test_feats, test_labels, num_classes = _split_features(
            encoder, train, test, embed, self.device, self.precision, self.num_classes, self.feature_storage
        )
        warn_if_few_labels(self.component, train_labels, test_labels)
        bank = train_feats.shape[0]
        clipped = [k for k in self.k if k > bank]
        if clipped:
            asked = ", ".join(str(k) for k in clipped)
            warnings.warn(
                f"{self.component}: k={asked} exceeds the {bank} train samples (the feature bank), so k={bank} "
                f"is used; the metrics keep the names knn_top1@{clipped[0]}, ... and vote over the whole bank",
                UserWarning,
                stacklevel=2,
            )
        compute_device = torch.device(self.device) if self.device is not None else _module_device(encoder)
        train_feats, train_labels = train_feats.to(compute_device), train_labels.to(compute_device)
        inverse_norms = inverse_row_norms(train_feats, self.bank_batch_size)
        hits = {(k, top): 0 for k in self.k for top in (1, 5)}
        for query, query_labels in zip(
            test_feats.split(self.batch_size), test_labels.split(self.batch_size), strict=True
        ):
            similarity, index = cosine_top_k(
                query.to(compute_device),
                train_feats,
                k=min(max(self.k), bank),
                bank_batch_size=self.bank_batch_size,
                bank_inverse_norms=inverse_norms,
            )
            neighbour_labels = train_labels[index]
            for k in self.k:  # columns are sorted: the first k are the k nearest
                used = min(k, bank)
                scores = knn_vote(
                    similarity[:, :used],
                    neighbour_labels[:, :used],
                    temperature=self.temperature,
                    num_classes=num_classes,
                )
                for top in (1, 5):
                    hits[(k, top)] += topk_hits(scores, query_labels, k=top)
        metrics: dict[str, float] = {}
        for k in self.k:
            metrics[f"knn_top1@{k}"] = hits[(k, 1)] / test_feats.shape[0]
            if num_classes >= 5:
                metrics[f"knn_top5@{k}"] = hits[(k, 5)] / test_feats.shape[0]
        return metrics


class LinearProbeEvaluator:
    """Multinomial logistic regression on frozen, standardised features.

    Features are computed once. A zero-initialised ``Linear(D, C)`` layer is fitted
    by full-batch L-BFGS (strong-Wolfe line search) on the mean cross-entropy plus
    ``weight_decay / 2 * ||W||^2``. The problem is convex, so the result is stable
    and deterministic; gradients are accumulated over ``batch_size`` rows at a time
    so memory stays bounded on large splits. Reports ``linear_top1`` (test) and
    ``linear_train_top1``. Fewer train samples than classes, or test classes missing
    from the train split, give a warning (the probe still runs).

    Args:
        epochs: maximum L-BFGS iterations (each is one pass over the train features,
            plus line-search passes).
        lr: L-BFGS step scale (1.0 lets the line search choose the step).
        weight_decay: L2 penalty on the weights (not the bias).
        batch_size: rows per chunk when accumulating the full-batch gradient.
        standardize: standardise features with the train mean and std first.
        seed: accepted for a uniform evaluator interface; the zero-initialised
            convex solve gives the same answer for every seed.

    Example:
        >>> evaluator = LinearProbeEvaluator(epochs=50)
        >>> evaluator(encoder, train_loader, test_loader)["linear_top1"]  # doctest: +SKIP
        0.97
    """

    higher_is_better: ClassVar[bool] = True
    component: str = "core.linear_probe"
    """The name warnings give this evaluator."""

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 1.0,
        weight_decay: float = 1e-3,
        batch_size: int = 4096,
        standardize: bool = True,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        precision: Precision = "fp32",
        num_classes: int | None = None,
        feature_storage: FeatureStorage = "auto",
    ) -> None:
        _check_positive(epochs=epochs, lr=lr, batch_size=batch_size)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.standardize = standardize
        self.seed = seed
        self.device = device
        self.precision: Precision = precision
        self.num_classes = num_classes
        self.feature_storage: FeatureStorage = feature_storage

    def __call__(self, encoder: Encoder, train: Iterable[Batch], test: Iterable[Batch]) -> dict[str, float]:
        train_feats, train_labels, test_feats, test_labels, num_classes = _split_features(
            encoder, train, test, embed, self.device, self.precision, self.num_classes, self.feature_storage
        )
        warn_if_few_labels(self.component, train_labels, test_labels)
        if self.standardize:
            train_feats, test_feats = standardize(train_feats, test_feats)
        compute_device = torch.device(self.device) if self.device is not None else _module_device(encoder)
        train_feats, train_labels, test_feats = (t.to(compute_device) for t in (train_feats, train_labels, test_feats))
        with _seeded(self.seed):  # nn.Linear draws a default init from the global generator
            head = nn.Linear(train_feats.shape[1], num_classes, device=compute_device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        optimizer = torch.optim.LBFGS(
            head.parameters(), lr=self.lr, max_iter=self.epochs, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            total = head.weight.pow(2).sum() * (self.weight_decay / 2)
            total.backward()
            chunks = zip(train_feats.split(self.batch_size), train_labels.split(self.batch_size), strict=True)
            for rows, labels in chunks:
                logits = head(rows.float())  # float16 features are upcast a chunk at a time
                chunk_loss = nn.functional.cross_entropy(logits, labels, reduction="sum") / train_feats.shape[0]
                chunk_loss.backward()
                total = total.detach() + chunk_loss.detach()
            return total

        optimizer.step(closure)
        return {
            "linear_top1": topk_accuracy(_predict(head, test_feats, self.batch_size), test_labels),
            "linear_train_top1": topk_accuracy(_predict(head, train_feats, self.batch_size), train_labels),
        }


class _LayerWeightedHead(nn.Module):
    """Softmax-weighted sum of layers, then ``Linear -> ReLU -> Linear`` (SUPERB utterance head)."""

    def __init__(self, num_layers: int, dim: int, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.classifier = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_classes))

    def forward(self, layer_feats: Tensor) -> Tensor:
        logits: Tensor = self.classifier(layer_weighted_sum(layer_feats, self.layer_logits))
        return logits


class LayerWeightedProbeEvaluator:
    """SUPERB-style probe: learned softmax weights over all hidden layers, then a small MLP.

    Per-layer mean-pooled states come from :func:`embed_layers` (computed once) and
    are standardised per layer with train statistics. The layer weights start
    uniform and are trained jointly with the ``Linear -> ReLU -> Linear`` head by
    mini-batch AdamW with a cosine decay, deterministically for a given ``seed``.
    Reports ``layer_probe_top1`` and ``layer_weight_{i}``, the learned softmax
    weight of layer ``i``. Fewer train samples than classes, or test classes missing
    from the train split, give a warning (the probe still runs).

    Args:
        epochs: passes over the train features.
        lr: learning rate of the MLP head.
        hidden_dim: width of the head's hidden layer.
        weight_decay: AdamW weight decay of the head (the layer weights get none).
        layer_lr: learning rate of the layer-weight logits; higher than ``lr`` so the
            weights move decisively within a short probe.
        batch_size: train rows per step.
        standardize: standardise each layer's features with train statistics first.
        seed: seeds the head's initialisation and the shuffling.

    Example:
        >>> evaluator = LayerWeightedProbeEvaluator(epochs=30)
        >>> metrics = evaluator(encoder, train_loader, test_loader)  # doctest: +SKIP
        >>> max(range(12), key=lambda i: metrics[f"layer_weight_{i}"])  # doctest: +SKIP
        7
    """

    higher_is_better: ClassVar[bool] = True
    component: str = "core.layer_probe"
    """The name warnings give this evaluator (``speech.utterance_probe`` sets its own)."""

    def __init__(
        self,
        epochs: int = 50,
        lr: float = 1e-3,
        hidden_dim: int = 256,
        weight_decay: float = 1e-4,
        layer_lr: float = 3e-2,
        batch_size: int = 256,
        standardize: bool = True,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        precision: Precision = "fp32",
        num_classes: int | None = None,
        feature_storage: FeatureStorage = "auto",
    ) -> None:
        _check_positive(epochs=epochs, lr=lr, hidden_dim=hidden_dim, layer_lr=layer_lr, batch_size=batch_size)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.epochs = epochs
        self.lr = lr
        self.hidden_dim = hidden_dim
        self.weight_decay = weight_decay
        self.layer_lr = layer_lr
        self.batch_size = batch_size
        self.standardize = standardize
        self.seed = seed
        self.device = device
        self.precision: Precision = precision
        self.num_classes = num_classes
        self.feature_storage: FeatureStorage = feature_storage

    def __call__(self, encoder: Encoder, train: Iterable[Batch], test: Iterable[Batch]) -> dict[str, float]:
        train_feats, train_labels, test_feats, test_labels, num_classes = _split_features(
            encoder, train, test, embed_layers, self.device, self.precision, self.num_classes, self.feature_storage
        )
        warn_if_few_labels(self.component, train_labels, test_labels)
        if self.standardize:  # statistics per (layer, dim): layers can live on very different scales
            train_feats, test_feats = standardize(train_feats, test_feats)
        compute_device = torch.device(self.device) if self.device is not None else _module_device(encoder)
        train_feats, train_labels, test_feats = (t.to(compute_device) for t in (train_feats, train_labels, test_feats))
        _, num_layers, dim = train_feats.shape
        with _seeded(self.seed):
            head = _LayerWeightedHead(num_layers, dim, self.hidden_dim, num_classes)
        head.to(compute_device)
        _train_adamw(
            head,
            train_feats,
            train_labels,
            epochs=self.epochs,
            lr=self.lr,
            param_groups=[
                {"params": [head.layer_logits], "weight_decay": 0.0, "lr": self.layer_lr},
                {"params": list(head.classifier.parameters()), "weight_decay": self.weight_decay},
            ],
            batch_size=self.batch_size,
            seed=self.seed,
        )
        metrics = {"layer_probe_top1": topk_accuracy(_predict(head, test_feats, self.batch_size), test_labels)}
        for index, weight in enumerate(head.layer_logits.detach().softmax(dim=0).tolist()):
            metrics[f"layer_weight_{index}"] = float(weight)
        return metrics
