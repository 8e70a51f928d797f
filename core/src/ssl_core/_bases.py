"""Optional base classes that fill in the capability flags of the contracts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._protocols import Batch, Features, Views

__all__ = ["EncoderBase", "ObjectiveBase", "ViewGeneratorBase"]


class EncoderBase(nn.Module):
    """Convenience base for encoders: set ``embed_dim`` and override ``forward``.

    Example:
        >>> class Flat(EncoderBase):
        ...     modality = "vector"
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.embed_dim = 4
        ...         self.proj = torch.nn.Linear(3, 4)
        ...     def forward(self, batch, token_mask=None):
        ...         return Features(pooled=self.proj(batch["x"]))
        >>> Flat()({"x": torch.zeros(2, 3)}).pooled.shape
        torch.Size([2, 4])
    """

    modality: ClassVar[str] = "any"
    supports_token_mask: ClassVar[bool] = False
    returns_tokens: ClassVar[bool] = False
    returns_layers: ClassVar[bool] = False
    embed_dim: int

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:  # pragma: no cover
        raise NotImplementedError


class ObjectiveBase(nn.Module):
    """Convenience base for objectives: override ``forward(encoder, views)``.

    ``on_step_end(step, max_steps)`` is called by the training loop after each
    optimizer step; the default does nothing.
    """

    requires_tokens: ClassVar[bool] = False
    requires_token_mask: ClassVar[bool] = False
    requires_layers: ClassVar[bool] = False

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Hook for EMA teachers and schedules; called after every optimizer step."""

    def health(self) -> dict[str, float]:
        """Optional: this method's health scalars at the last step (DINO's teacher entropy, a codebook's perplexity).

        The online monitors read them every ``train.monitor_every`` steps and log them as
        ``health/<name>``; the default reports none.
        """
        return {}

    def health_alarms(self, health: Mapping[str, float]) -> list[tuple[str, str]]:
        """Optional: ``(rule, message)`` for each collapse this method recognises in ``health``.

        A message names the symptom and the known remedies; the monitors warn once per
        rule (or stop, with ``train.on_collapse = "stop"``). The default recognises none.
        """
        return []


class ViewGeneratorBase:
    """Convenience base for view generators; subclasses implement ``__call__``."""

    modality: ClassVar[str] = "any"

    def __call__(self, batch: Batch, generator: torch.Generator) -> Views:  # pragma: no cover
        raise NotImplementedError

    def to(self, device: Any) -> ViewGeneratorBase:
        """View generators hold no tensors by default; returns ``self``."""
        return self
