"""Several objectives on one encoder: weighted losses, each objective with its own views.

:class:`MultiViews` runs each objective's view generator on the batch (a generator
shared by several objectives runs once) and :class:`MultiObjective` sums the weighted
losses, logging each objective's scalars as ``{label}/{key}``. The pipeline builds both
from ``[[objective]]`` tables; they are plain components, so the training loop, DDP,
checkpoints and exact resume need nothing new.

Example:
    >>> import torch
    >>> from ssl_core._components import MLPEncoder, NoiseViews, SimCLRObjective
    >>> encoder = MLPEncoder(in_dim=8, hidden_dim=16, embed_dim=4)
    >>> noise = NoiseViews()
    >>> views = MultiViews([noise, noise])
    >>> objective = MultiObjective({"a": SimCLRObjective(embed_dim=4), "b": SimCLRObjective(embed_dim=4)},
    ...                            weights={"a": 1.0, "b": 0.5})
    >>> out = objective(encoder, views({"x": torch.randn(6, 8)}, torch.Generator()))
    >>> sorted(out)
    ['a/embedding_std', 'a/loss', 'b/embedding_std', 'b/loss', 'loss']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._protocols import Batch, Views

__all__ = ["MultiObjective", "MultiViews"]

PER_OBJECTIVE = "per_objective"
"""The :attr:`Views.extras` key holding one :class:`Views` per objective."""


class MultiViews:
    """One :class:`Views` per objective, from each objective's view generator, in order.

    Generators that are the same object run once per batch and their views are shared.
    ``modality`` is the common input modality (``"any"`` when they differ, which the
    pipeline's checks then report per generator).
    """

    def __init__(self, generators: Sequence[Callable[[Batch, torch.Generator], Views]]) -> None:
        if not generators:
            raise ValueError("MultiViews needs at least one view generator")
        self.generators = list(generators)
        kinds = {getattr(g, "modality", "any") for g in self.generators}
        self.modality = kinds.pop() if len(kinds) == 1 else "any"

    def to(self, device: torch.device | str) -> MultiViews:
        """Move every generator that can move (buffers of batched augmentations)."""
        for generator in {id(g): g for g in self.generators}.values():
            move = getattr(generator, "to", None)
            if callable(move):
                move(device)
        return self

    def __call__(self, batch: Batch, generator: torch.Generator) -> Views:
        made: dict[int, Views] = {}
        per_objective = []
        for view_generator in self.generators:
            key = id(view_generator)
            if key not in made:
                made[key] = view_generator(batch, generator)
            per_objective.append(made[key])
        return Views(batches=[], extras={PER_OBJECTIVE: per_objective})


class MultiObjective(nn.Module):
    """Weighted sum of objectives sharing one encoder; per-objective scalars logged as ``{label}/{key}``.

    ``on_step_end`` reaches every objective. ``export_encoder`` is that of the first
    objective defining one (DINO's EMA teacher in MAE + DINO), else the student.

    Args:
        objectives: label -> objective module, in the order of the views.
        weights: label -> loss weight (default 1 each).
    """

    def __init__(self, objectives: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("MultiObjective needs at least one objective")
        self.labels = list(objectives)
        self.objectives = nn.ModuleList(objectives.values())  # a list keeps labels such as "dino#2" legal
        self.weights = {label: float((weights or {}).get(label, 1.0)) for label in self.labels}
        for flag in ("requires_tokens", "requires_token_mask", "requires_layers"):
            setattr(self, flag, any(getattr(o, flag, False) for o in self.objectives))

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        per_objective = views.extras.get(PER_OBJECTIVE)
        if not isinstance(per_objective, list) or len(per_objective) != len(self.labels):
            raise ValueError(
                f"MultiObjective needs one Views per objective ({len(self.labels)}) from MultiViews; "
                f"got {type(per_objective).__name__}"
            )
        total: Tensor | None = None
        out: dict[str, Tensor] = {}
        for label, objective, objective_views in zip(self.labels, self.objectives, per_objective, strict=True):
            result = objective(encoder, objective_views)
            weighted = result["loss"] * self.weights[label]
            total = weighted if total is None else total + weighted
            out.update({f"{label}/{key}": value for key, value in result.items()})
        assert total is not None
        return {"loss": total, **out}

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Forward the end of a step (EMA updates, schedules) to every objective that wants it."""
        for objective in self.objectives:
            hook = getattr(objective, "on_step_end", None)
            if callable(hook):
                hook(step, max_steps)

    def export_encoder(self, encoder: nn.Module) -> nn.Module:
        """The first objective's exported encoder (e.g. an EMA teacher), else ``encoder``."""
        for objective in self.objectives:
            export = getattr(objective, "export_encoder", None)
            if callable(export):
                exported: Any = export(encoder)
                return exported  # type: ignore[no-any-return]
        return encoder
