"""The four contracts of the SSL pipeline, plus datasets and recipes.

    data -> ViewGenerator -> Encoder -> Objective -> loss
                             Encoder -> Evaluator -> metrics

A *batch* is a ``dict[str, Any]`` produced by a dataset's collate function. The
encoder input lives under ``"x"``; labels, when present, under ``"y"``; other keys
(``"padding_mask"``, ``"lengths"``, ``"edge_index"``, ...) are modality specific.

The contracts are :class:`typing.Protocol` classes and are checked structurally
when a component is registered (see :mod:`ssl_core._checks`), never with
``isinstance``. The small base classes :class:`EncoderBase` and
:class:`ObjectiveBase` are optional conveniences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from torch import Tensor
    from torch.utils.data import Dataset

__all__ = [
    "Batch",
    "DatasetProvider",
    "DatasetSplits",
    "Encoder",
    "Evaluator",
    "Features",
    "Objective",
    "Recipe",
    "ViewGenerator",
    "Views",
]

Batch = dict[str, Any]
"""A collated batch: ``{"x": input, "y": labels?, ...}``."""


@dataclass
class Features:
    """What an encoder returns.

    Attributes:
        pooled: one vector per sample, ``[B, D]``.
        tokens: per-token vectors ``[B, T, D]`` (patches, frames, timestamps, nodes).
        padding_mask: ``[B, T]``, ``True`` where a token is padding.
        layers: hidden states per layer, each ``[B, T, D]`` or ``[B, D]``, for
            layer-weighted (SUPERB-style) probes.

    Example:
        >>> import torch
        >>> f = Features(pooled=torch.zeros(4, 8))
        >>> f.pooled.shape
        torch.Size([4, 8])
    """

    pooled: Tensor
    tokens: Tensor | None = None
    padding_mask: Tensor | None = None
    layers: tuple[Tensor, ...] | None = None


@dataclass
class Views:
    """What a view generator returns: augmented copies, crops or masks.

    Attributes:
        batches: one encoder-ready batch per view (global crops first).
        masks: optional token mask per view (``True`` = masked), aligned with ``batches``.
        extras: anything else the objective needs (crop offsets, kept indices, ...).

    Example:
        >>> import torch
        >>> v = Views(batches=[{"x": torch.zeros(2, 3)}, {"x": torch.ones(2, 3)}])
        >>> len(v)
        2
    """

    batches: list[Batch]
    masks: list[Tensor | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.batches)


class Encoder(Protocol):
    """Maps a batch to :class:`Features`. An ``nn.Module``.

    Capability flags (class attributes) let the pipeline reject a mix that cannot
    work before training starts: ``modality``, ``supports_token_mask``,
    ``returns_tokens`` and ``returns_layers``.
    """

    embed_dim: int
    modality: ClassVar[str]
    supports_token_mask: ClassVar[bool]
    returns_tokens: ClassVar[bool]
    returns_layers: ClassVar[bool]

    def __call__(self, batch: Batch, token_mask: Tensor | None = None) -> Features: ...


class ViewGenerator(Protocol):
    """Turns a raw batch into :class:`Views`, drawing randomness from ``generator``."""

    modality: ClassVar[str]

    def __call__(self, batch: Batch, generator: torch.Generator) -> Views: ...


class Objective(Protocol):
    """Owns heads, decoders, teachers and targets; returns ``{"loss": ..., **scalars}``.

    May implement ``on_step_end(step, max_steps)`` for EMA and schedules. Heads size
    themselves from an ``embed_dim`` constructor parameter, which the pipeline fills
    from the encoder; an ``encoder`` constructor parameter receives the encoder itself
    (to copy into an EMA teacher). May implement ``export_encoder(encoder)`` to return
    the module a run evaluates and saves instead of the student (DINO's teacher).
    """

    requires_tokens: ClassVar[bool]
    requires_token_mask: ClassVar[bool]
    requires_layers: ClassVar[bool]

    def __call__(self, encoder: Encoder, views: Views) -> dict[str, Tensor]: ...


class Evaluator(Protocol):
    """Scores a frozen encoder on a labelled train and test split.

    ``train`` and ``test`` are iterables of batches (usually ``DataLoader``s built
    with the dataset's collate function) whose batches carry ``"y"`` labels.
    """

    higher_is_better: ClassVar[bool]

    def __call__(self, encoder: Encoder, train: Iterable[Batch], test: Iterable[Batch]) -> dict[str, float]: ...


@dataclass
class DatasetSplits:
    """What a dataset provider returns.

    Attributes:
        train: the pretraining split (labels optional, used by evaluators).
        test: the held-out labelled split.
        collate: builds a :data:`Batch` from a list of samples.
        modality: ``"vector"``, ``"image"``, ``"audio"``, ``"graph"``, ``"timeseries"``.
        num_classes: number of label classes, if labelled.
        info: free-form facts (sample rate, channels, source path, ...).
        pretrain: what training iterates over when it differs from ``train`` (mini-batch
            subgraphs of one big graph, unlabelled extra data); ``None`` trains on ``train``.
        pretrain_collate: the collate function for ``pretrain``; ``None`` uses ``collate``.

    The splits may hold tensors in memory or decode each item from disk in
    ``__getitem__`` (declare ``decodes_lazily = True`` to get DataLoader workers by
    default; define ``set_epoch(epoch)`` for per-epoch randomness, drawn from
    :func:`ssl_core.sample_generator`; return :class:`ssl_core.SkippedItem` for an
    unreadable file, which the loop skips, names and counts).
    """

    train: Dataset[Any]
    test: Dataset[Any]
    collate: Callable[[Sequence[Any]], Batch]
    modality: str
    num_classes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    pretrain: Dataset[Any] | None = None
    pretrain_collate: Callable[[Sequence[Any]], Batch] | None = None


class DatasetProvider(Protocol):
    """``provider(root=None, **options) -> DatasetSplits``."""

    def __call__(self, root: str | None = None, **options: Any) -> DatasetSplits: ...


class Recipe(Protocol):
    """``recipe(**arguments) -> Mapping`` returning a pipeline config (the TOML structure).

    Every argument has a default (a real value, or ``None`` for "the preset's"), so
    ``recipe()`` alone is a whole pipeline; ``ssl run NAME --recipe key=value`` and
    ``recipe = {name = NAME, key = value}`` pass arguments, checked against the annotations.
    """

    def __call__(self, **arguments: Any) -> Mapping[str, Any]: ...
