"""wav2vec 2.0 (contrastive, Gumbel product quantiser) and HuBERT (masked cluster prediction) objectives.

Both mask spans of encoder frames (settings from :class:`~ssl_speech.SpanMaskViews`) and
need an encoder that exposes its front-end: ``frontend_features(batch) -> (features,
padding_mask)`` and ``encode_features(features, padding_mask, token_mask) -> Features``
(:class:`~ssl_speech.Wav2Vec2Encoder` does).

Example:
    >>> import torch
    >>> from ssl_speech import SpanMaskViews, Wav2Vec2Encoder
    >>> enc = Wav2Vec2Encoder(preset="tiny")
    >>> objective = Wav2Vec2Objective(embed_dim=64, num_entries=16, final_dim=32, num_negatives=5)
    >>> views = SpanMaskViews()({"x": torch.randn(2, 16000)}, torch.Generator().manual_seed(0))
    >>> sorted(objective(enc, views))[:3]
    ['accuracy', 'contrastive', 'diversity']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Views

from .functional import diversity_loss, gumbel_softmax_hard, infonce_logits, sample_negatives, span_mask

__all__ = ["HuBERTObjective", "Wav2Vec2Objective"]

CODEBOOK_ALARM_FRACTION = 0.1
"""The codebook alarm fires when the perplexity sits below this fraction of its maximum ``G * V``."""
HUBERT_ALARM_CLASSES = 2
"""The HuBERT alarm fires when the masked frames' predictions use at most this many clusters."""
ALARM_PERSISTENCE = 2
"""Consecutive monitor checks a collapse must persist for before its alarm fires (one bad batch is not one)."""


class _Wav2Vec2Step(NamedTuple):
    """Detached scalars of wav2vec 2.0's last step, read by :meth:`Wav2Vec2Objective.health`."""

    perplexity: Tensor
    diversity: Tensor
    contrastive: Tensor
    accuracy: Tensor


class _HuBERTStep(NamedTuple):
    """Detached masked-frame targets and predictions of HuBERT's last step, read by :meth:`HuBERTObjective.health`."""

    targets: Tensor
    predicted: Tensor


def _persisting(streak: int, collapsed: bool) -> int:
    """The new length of a run of collapsed checks (0 when this one is healthy)."""
    return streak + 1 if collapsed else 0


def _frontend(encoder: nn.Module, who: str) -> tuple[Any, Any]:
    frontend = getattr(encoder, "frontend_features", None)
    encode = getattr(encoder, "encode_features", None)
    if not callable(frontend) or not callable(encode):
        raise ValueError(
            f"{who} needs an encoder with frontend_features() and encode_features() (speech.wav2vec2 has them); "
            f"{type(encoder).__name__} has not"
        )
    return frontend, encode


def _views(views: Views, who: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch and mask settings, with ``extras["generator"]`` seeded from the view's ``span_seed``."""
    batch, extras = views.batches[0], dict(views.extras)
    seed = batch.get("span_seed")
    if not isinstance(seed, Tensor) or "mask_prob" not in extras:
        raise ValueError(f"{who} needs views from speech.span_mask (they carry the mask settings and a seed)")
    device = batch["x"].device if isinstance(batch.get("x"), Tensor) else seed.device
    extras["generator"] = torch.Generator(device=device).manual_seed(int(seed))
    return batch, extras


def _scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity forward; gradient multiplied by ``factor`` (wav2vec 2.0's ``feature_grad_mult``)."""
    if factor == 1.0:
        return x
    return x * factor + x.detach() * (1.0 - factor)


def _masked_frontend(
    encoder: nn.Module, views: Views, who: str, feature_grad_mult: float
) -> tuple[Any, dict[str, Any], dict[str, Any], Tensor, Tensor, Tensor, Tensor]:
    """Shared first half of both objectives: front-end features (gradient scaled), their penalty, the span mask.

    Returns ``(encode, batch, extras, features, padding, mask, penalty)``.
    """
    frontend, encode = _frontend(encoder, who)
    batch, extras = _views(views, who)
    features, padding = frontend(batch)
    features = _scale_grad(features, feature_grad_mult)
    penalty = features.float().pow(2).mean()
    mask, padding = _mask(padding, features, extras)
    return encode, batch, extras, features, padding, mask, penalty


def _padding_or_none(padding: Tensor) -> Tensor | None:
    return padding if bool(padding.any()) else None


def _mask(padding: Tensor | None, features: Tensor, extras: dict[str, Any]) -> tuple[Tensor, Tensor]:
    if padding is None:
        padding = torch.zeros(features.shape[:2], dtype=torch.bool, device=features.device)
    mask = span_mask(
        padding,
        extras["mask_prob"],
        extras["mask_length"],
        generator=extras["generator"],
        min_masks=extras.get("min_masks", 2),
    )
    return mask, padding


class Wav2Vec2Objective(nn.Module):
    """wav2vec 2.0 (Baevski et al., 2020): contrastive prediction of quantised masked frames.

    The front-end features are layer-normalised and quantised by a Gumbel-softmax
    product quantiser (``num_groups`` codebooks of ``num_entries`` entries, temperature
    ``gumbel_start`` decayed by ``gumbel_decay`` per step down to ``gumbel_end``); the
    transformer output at each masked frame must pick its quantised target among
    ``num_negatives`` quantised frames of the same utterance and ``cross_sample_negatives``
    masked frames of any utterance in the batch (fairseq's option; cosine logits /
    ``temperature``). Short clips (under ~2 s, which fairseq filters out) give too few
    frames per utterance for in-utterance negatives alone: the quantiser then collapses to
    one code per utterance (see docs/speech.md); the FSDD recipe counters it with diversity
    weight 1.0, no feature penalty and lr 2e-4, and ``health_alarms`` warns when it
    happens. Plus ``diversity_weight`` x the codebook diversity loss and
    ``feature_penalty_weight`` x the mean squared front-end activation.

    Example:
        >>> Wav2Vec2Objective(embed_dim=256).codebook.shape
        torch.Size([2, 320, 128])
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = True
    requires_layers: ClassVar[bool] = False
    gumbel_step: Tensor
    """Optimizer steps the Gumbel temperature has decayed over (a buffer: saved and restored with the weights)."""

    def __init__(
        self,
        embed_dim: int,
        feature_dim: int = 512,
        num_groups: int = 2,
        num_entries: int = 320,
        final_dim: int = 256,
        num_negatives: int = 100,
        cross_sample_negatives: int = 0,
        temperature: float = 0.1,
        gumbel_start: float = 2.0,
        gumbel_end: float = 0.5,
        gumbel_decay: float = 0.999995,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        feature_grad_mult: float = 0.1,
    ) -> None:
        super().__init__()
        if final_dim % num_groups:
            raise ValueError(f"final_dim ({final_dim}) must be divisible by num_groups ({num_groups})")
        if num_negatives + cross_sample_negatives < 1:
            raise ValueError("need at least one negative (num_negatives + cross_sample_negatives >= 1)")
        self.embed_dim, self.num_negatives, self.temperature = embed_dim, num_negatives, temperature
        self.cross_sample_negatives = cross_sample_negatives
        self.gumbel = (gumbel_start, gumbel_end, gumbel_decay)
        self.tau = gumbel_start
        # the schedule's step, in the state dict so that a resumed run continues the decay (not from gumbel_start)
        self.register_buffer("gumbel_step", torch.zeros((), dtype=torch.long))
        self.diversity_weight, self.feature_penalty_weight = diversity_weight, feature_penalty_weight
        self.feature_grad_mult = feature_grad_mult
        self.groups, self.entries = num_groups, num_entries
        self.quantizer_norm = nn.LayerNorm(feature_dim)
        self.weight_proj = nn.Linear(feature_dim, num_groups * num_entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.codebook = nn.Parameter(torch.empty(num_groups, num_entries, final_dim // num_groups).uniform_())
        self.project_q = nn.Linear(final_dim, final_dim)
        self.final_proj = nn.Linear(embed_dim, final_dim)
        self._last_step: _Wav2Vec2Step | None = None
        self._collapsed_checks = 0

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Decay the Gumbel temperature: ``max(start * decay ** step, end)``."""
        self.gumbel_step.fill_(step)
        self.tau = self._tau_at(step)

    def _tau_at(self, step: int) -> float:
        start, end, decay = self.gumbel
        return max(start * decay**step, end) if step else start

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Restore the temperature with the step; a state dict from before ``gumbel_step`` starts at step 0."""
        state_dict.setdefault(prefix + "gumbel_step", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.tau = self._tau_at(int(self.gumbel_step))

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        encode, _, extras, features, padding, mask, penalty = _masked_frontend(
            encoder, views, "Wav2Vec2Objective", self.feature_grad_mult
        )
        generator: torch.Generator = extras["generator"]
        out = encode(features, _padding_or_none(padding), mask)
        # quantised targets of the masked frames, from the unmasked front-end features
        masked_features = self.quantizer_norm(features[mask])  # [N, C]
        logits = self.weight_proj(masked_features).view(-1, self.groups, self.entries)
        onehot = gumbel_softmax_hard(logits, self.tau, generator=generator)
        codes = torch.einsum("ngv,gvd->ngd", onehot, self.codebook.float()).reshape(len(onehot), -1)
        targets = self.project_q(codes.to(features.dtype))
        context = self.final_proj(out.tokens[mask])
        utterance = mask.nonzero()[:, 0]
        picks = []
        if self.num_negatives:
            picks.append(sample_negatives(utterance, self.num_negatives, generator=generator))
        if self.cross_sample_negatives:  # the whole batch as one pool
            pool = torch.zeros_like(utterance)
            picks.append(sample_negatives(pool, self.cross_sample_negatives, generator=generator))
        negatives = targets[torch.cat(picks, dim=1)]
        scores = infonce_logits(context, targets, negatives, self.temperature)
        contrastive = F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))
        diversity, perplexity = diversity_loss(logits)
        loss = contrastive + self.diversity_weight * diversity + self.feature_penalty_weight * penalty
        with torch.no_grad():
            accuracy = (scores.argmax(dim=1) == 0).float().mean()
        self._last_step = _Wav2Vec2Step(perplexity.detach(), diversity.detach(), contrastive.detach(), accuracy)
        return {
            "loss": loss,
            "contrastive": contrastive.detach(),
            "diversity": diversity.detach(),
            "perplexity": perplexity.detach(),
            "feature_penalty": penalty.detach(),
            "accuracy": accuracy,
            "masked_fraction": (mask.sum() / (~padding).sum()).detach().float(),
            "gumbel_tau": torch.tensor(self.tau),
        }

    @property
    def max_perplexity(self) -> int:
        """The codebook perplexity when every entry of every group is used equally: ``G * V``."""
        return self.groups * self.entries

    def health(self) -> dict[str, float]:
        """Codebook perplexity (and its fraction of ``G * V``), diversity loss, contrastive loss and accuracy.

        All from the last training batch (empty before the first step). A collapsing
        quantiser shows as a perplexity that falls towards ``G`` (one code per group) while
        the contrastive accuracy climbs to 1 (every negative equals its positive).
        """
        last = self._last_step
        if last is None:
            return {}
        perplexity = float(last.perplexity)
        return {
            "codebook_perplexity": perplexity,
            "codebook_perplexity_fraction": perplexity / self.max_perplexity,
            "diversity_loss": float(last.diversity),
            "contrastive_loss": float(last.contrastive),
            "contrastive_accuracy": float(last.accuracy),
        }

    def health_alarms(self, health: Mapping[str, float]) -> list[tuple[str, str]]:
        """Codebook collapse: perplexity under 10% of ``G * V`` at two monitor checks running."""
        if "codebook_perplexity" not in health:
            return []
        perplexity, maximum = health["codebook_perplexity"], self.max_perplexity
        self._collapsed_checks = _persisting(self._collapsed_checks, perplexity < CODEBOOK_ALARM_FRACTION * maximum)
        if self._collapsed_checks < ALARM_PERSISTENCE:
            return []
        accuracy = health.get("contrastive_accuracy", float("nan"))
        return [("wav2vec2_codebook_collapse", (
            f"the codebook perplexity is {perplexity:.1f} of a maximum {maximum} ({self.groups} groups x "
            f"{self.entries} entries; {perplexity / maximum:.1%}, under {CODEBOOK_ALARM_FRACTION:.0%} for "
            f"{self._collapsed_checks} checks running) and the contrastive accuracy is {accuracy:.2f}: the quantiser "
            "is collapsing onto a few codes, so targets and negatives coincide and the task turns trivial. Known "
            "remedies (docs/speech.md): a larger diversity weight (objective.diversity_weight = 1.0, the FSDD "
            "recipe's), a layer-normalised CNN (encoder.norm_mode = 'layer_norm'), no feature penalty "
            "(objective.feature_penalty_weight = 0), a lower learning rate (2e-4), negatives drawn across the "
            "batch (objective.cross_sample_negatives), longer clips (fairseq drops utterances under 2 s)"
        ))]  # fmt: skip


class HuBERTObjective(nn.Module):
    """HuBERT (Hsu et al., 2021): predict frame cluster labels at masked frames.

    Labels come in the batch under ``target_key`` (``[B, F_labels]``, ``-100`` after the
    end; see :func:`ssl_speech.hubert_labels`). Logits are the cosine similarity between
    the projected transformer output and a learned embedding per cluster, over
    ``temperature``; cross-entropy on masked frames only. Label and encoder frame counts
    must agree within ``length_tolerance`` frames per utterance (the longer is cropped).

    Example:
        >>> HuBERTObjective(embed_dim=256, num_clusters=100).label_embeddings.shape
        torch.Size([100, 256])
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = True
    requires_layers: ClassVar[bool] = False

    def __init__(
        self,
        embed_dim: int,
        num_clusters: int = 100,
        final_dim: int = 256,
        temperature: float = 0.1,
        feature_penalty_weight: float = 10.0,
        feature_grad_mult: float = 0.1,
        target_key: str = "targets",
        length_tolerance: int = 2,
    ) -> None:
        super().__init__()
        self.embed_dim, self.temperature, self.target_key = embed_dim, temperature, target_key
        self.feature_penalty_weight, self.feature_grad_mult = feature_penalty_weight, feature_grad_mult
        self.length_tolerance = length_tolerance
        self.final_proj = nn.Linear(embed_dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_clusters, final_dim).uniform_(-1.0, 1.0))
        self._last_step: _HuBERTStep | None = None
        self._collapsed_checks = 0

    def _aligned_targets(self, batch: dict[str, Any], padding: Tensor) -> Tensor:
        targets = batch.get(self.target_key)
        if not isinstance(targets, Tensor):
            raise ValueError(
                f"HuBERTObjective needs frame labels under batch[{self.target_key!r}]; create them with "
                "ssl_speech.hubert_labels and load the dataset with labels=PATH"
            )
        frames = (~padding).sum(dim=1)
        label_frames = (targets >= 0).sum(dim=1)
        off = (frames - label_frames).abs() > self.length_tolerance
        if bool(off.any()):
            row = int(off.nonzero()[0])
            where = batch.get("file", batch.get("index"))
            name = where[row] if isinstance(where, list) else (int(where[row]) if isinstance(where, Tensor) else row)
            raise ValueError(
                f"HuBERT labels do not match the encoder's frames for utterance {name}: {int(label_frames[row])} "
                f"labels vs {int(frames[row])} frames; regenerate the labels for this encoder's front-end"
            )
        width = padding.shape[1]
        if targets.shape[1] < width:
            targets = F.pad(targets, (0, width - targets.shape[1]), value=-100)
        return targets[:, :width].masked_fill(padding, -100)

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        encode, batch, _, features, padding, mask, penalty = _masked_frontend(
            encoder, views, "HuBERTObjective", self.feature_grad_mult
        )
        targets = self._aligned_targets(batch, padding)
        mask = mask & (targets >= 0)  # a frame past the end of its labels is not scored
        out = encode(features, _padding_or_none(padding), mask)
        projected = F.normalize(self.final_proj(out.tokens[mask]).float(), dim=-1)
        logits = projected @ F.normalize(self.label_embeddings.float(), dim=-1).t() / self.temperature
        masked_targets = targets[mask]
        prediction = F.cross_entropy(logits, masked_targets.long())
        loss = prediction + self.feature_penalty_weight * penalty
        with torch.no_grad():
            predicted = logits.argmax(dim=1)
            accuracy = (predicted == masked_targets).float().mean()
        self._last_step = _HuBERTStep(masked_targets.detach(), predicted)
        return {
            "loss": loss,
            "prediction": prediction.detach(),
            "feature_penalty": penalty.detach(),
            "accuracy": accuracy,
            "masked_fraction": (mask.sum() / (~padding).sum()).detach().float(),
        }

    @property
    def num_clusters(self) -> int:
        """The number of target clusters ``k``."""
        return int(self.label_embeddings.shape[0])

    def health(self) -> dict[str, float]:
        """Masked accuracy and cluster usage of the last batch's masked frames (empty before the first step).

        ``target_usage`` / ``predicted_usage``: the fraction of the ``k`` clusters that
        appear as targets / as predictions (``1 / k`` when the model answers one cluster for
        every frame); ``target_entropy``: the entropy (nats) of the target histogram.
        """
        last = self._last_step
        if last is None or last.targets.numel() == 0:
            return {}
        targets, predicted = last.targets.long().cpu(), last.predicted.long().cpu()
        counts = torch.bincount(targets, minlength=self.num_clusters).float()
        share = counts[counts > 0] / counts.sum()
        return {
            "masked_accuracy": float((predicted == targets).float().mean()),
            "target_usage": int((counts > 0).sum()) / self.num_clusters,
            "target_entropy": float(-(share * share.log()).sum()),
            "predicted_usage": int(predicted.unique().numel()) / self.num_clusters,
        }

    def health_alarms(self, health: Mapping[str, float]) -> list[tuple[str, str]]:
        """Prediction collapse: at most two clusters predicted for all masked frames, two checks running.

        Only when the targets themselves use more clusters than that, so a batch whose
        labels use few clusters raises no alarm.
        """
        if "predicted_usage" not in health:
            return []
        predicted = round(health["predicted_usage"] * self.num_clusters)
        used_by_targets = round(health["target_usage"] * self.num_clusters)
        collapsed = predicted <= HUBERT_ALARM_CLASSES < used_by_targets
        self._collapsed_checks = _persisting(self._collapsed_checks, collapsed)
        if self._collapsed_checks < ALARM_PERSISTENCE:
            return []
        return [("hubert_prediction_collapse", (
            f"HuBERT predicts {predicted} of its {self.num_clusters} clusters for all masked frames while the "
            f"targets use {used_by_targets} (masked accuracy {health.get('masked_accuracy', float('nan')):.2f}, "
            f"{self._collapsed_checks} checks running): the prediction has collapsed onto the most frequent "
            "targets. Known remedies: a lower learning rate or a longer warm-up, fewer clusters (num_clusters) or "
            "labels with a flatter histogram, check that the labels match the audio (ssl hubert-labels)"
        ))]  # fmt: skip
