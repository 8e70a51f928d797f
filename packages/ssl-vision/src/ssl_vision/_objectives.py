"""Objectives: MAE (masked patch reconstruction) and DINO (self-distillation with an EMA teacher)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Features, ObjectiveBase, Views, cosine_schedule, ema_update_, make_teacher

from ._encoders import sincos_pos_embed_2d, to_unit_float, use_explicit_attention
from .functional import dino_loss, mae_loss, patchify, update_center_

__all__ = ["DINOHead", "DINOObjective", "MAEObjective"]


class MAEObjective(ObjectiveBase):
    """MAE: encode the visible patches, decode all of them with mask tokens, regress the masked pixels.

    The decoder is a stack of timm ``Block`` s over ``[CLS, visible + mask tokens]`` with
    MAE's fixed sine-cosine positions; only the masked tokens go through the pixel head.
    Paper default decoder: 512 wide, 8 deep, 16 heads.

    Args:
        embed_dim: the encoder's width (filled by the pipeline).
        image_size: the side of the training crops; with ``patch_size`` gives the token grid.
        norm_pix_loss: standardise each target patch (the paper's better setting).

    Example:
        >>> obj = MAEObjective(embed_dim=192, image_size=32, patch_size=4, decoder_dim=64, decoder_depth=1,
        ...                    decoder_heads=4)
        >>> obj.num_patches
        64
    """

    requires_tokens: ClassVar[bool] = True
    requires_token_mask: ClassVar[bool] = True
    decoder_pos: Tensor

    def __init__(
        self,
        embed_dim: int,
        image_size: int = 224,
        patch_size: int = 16,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        channels: int = 3,
        attention: str = "auto",
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not divisible by patch size {patch_size}")
        self.patch_size, self.norm_pix_loss, self.attention = patch_size, norm_pix_loss, attention
        grid = (image_size // patch_size, image_size // patch_size)
        self.num_patches = grid[0] * grid[1]
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos", sincos_pos_embed_2d(decoder_dim, grid), persistent=False)
        self.decoder = nn.Sequential(
            *(Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True) for _ in range(decoder_depth))
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.pixel_head = nn.Linear(decoder_dim, patch_size * patch_size * channels)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        if not views.masks or views.masks[0] is None:
            raise ValueError("MAE needs a patch mask from its views (vision.mae_views gives one)")
        batch, mask = views.batches[0], views.masks[0]
        if mask.shape[1] != self.num_patches:
            raise ValueError(
                f"the views' mask has {mask.shape[1]} patches but the decoder was built for {self.num_patches}; "
                "give the views and the objective the same image_size and patch_size"
            )
        features = encoder(batch, token_mask=mask)
        if features.tokens is None:
            raise ValueError(f"{type(encoder).__name__} returned no tokens; MAE needs a ViT-style encoder")
        visible = self.decoder_embed(torch.cat([features.pooled.unsqueeze(1), features.tokens], dim=1))
        b, _, d = visible.shape
        grid_tokens = self.mask_token.to(visible.dtype).expand(b, self.num_patches, d)
        grid_tokens = grid_tokens.masked_scatter(~mask.unsqueeze(-1), visible[:, 1:])  # visible tokens in patch order
        x = torch.cat([visible[:, :1], grid_tokens], dim=1) + self.decoder_pos.to(visible.dtype)
        use_explicit_attention(self.decoder, x, self.attention)
        x = self.decoder_norm(self.decoder(x))
        prediction = self.pixel_head(x[:, 1:][mask])  # masked tokens only: [M, p*p*C]
        target = patchify(to_unit_float(batch["x"]), self.patch_size)[mask]
        loss = mae_loss(prediction, target, self.norm_pix_loss)
        self.__dict__["_last_loss"] = loss.detach()
        return {"loss": loss, "mask_ratio": mask.float().mean().detach()}

    def health(self) -> dict[str, float]:
        """The reconstruction loss on the masked patches at the last step (``health/masked_patch_loss``)."""
        last = self.__dict__.get("_last_loss")
        return {} if last is None else {"masked_patch_loss": float(last)}


class DINOHead(nn.Module):
    """DINO's projection head: 3-layer MLP to a bottleneck, L2 normalisation, weight-normalised last layer.

    ``norm_last_layer=True`` fixes the last layer's norms to 1 (DINO's default), so it is
    ``F.linear(x, normalize(v))``.

    Example:
        >>> DINOHead(16, out_dim=32, hidden_dim=64, bottleneck_dim=8)(torch.randn(4, 16)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim), *([nn.BatchNorm1d(hidden_dim)] if use_bn else []), nn.GELU()]
            width = hidden_dim
        layers.append(nn.Linear(width, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_weight = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.kaiming_uniform_(self.last_weight, a=5**0.5)  # nn.Linear's default
        self.last_norm = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        weight = F.normalize(self.last_weight, dim=1)
        if self.last_norm is not None:
            weight = weight * self.last_norm
        return F.linear(x, weight)


class DINOObjective(ObjectiveBase):
    """DINO: a student matches a momentum teacher's centred, sharpened outputs across crops.

    The teacher (encoder and head) is an EMA of the student (momentum cosine from 0.996
    to 1); it sees the global crops only, the student sees all crops (see ``group_crops``).
    Teacher outputs are centred (momentum 0.9); the teacher temperature warms up linearly
    (0.04 -> 0.07); the student temperature is 0.1. The head's last layer gets no gradient
    during the first ``freeze_last_layer_steps`` steps (DINO: one epoch). Works with any
    encoder that returns ``Features.pooled``. The teacher is what the pipeline evaluates
    and saves (:meth:`export_encoder`).

    Args:
        embed_dim: the encoder's width (filled by the pipeline).
        encoder: the student encoder (the pipeline passes it) to copy into the teacher.
        warmup_teacher_temp_steps: steps of teacher-temperature warm-up (a fixed count).
        warmup_teacher_temp_ratio: the warm-up as a fraction of the run's ``train.steps``
            (DINO: 30 of 100 epochs, 0.3), so it follows ``--set train.steps=...``; when set
            it wins over ``warmup_teacher_temp_steps``.
        group_crops: the student's and teacher's forwards: ``True`` one per crop size (the
            official code), ``False`` one per crop (lightly), ``None`` per crop in fp32 on
            CPU and per size otherwise. Measured on ViT-Tiny/4, one thread: in fp32 on CPU
            the grouped step ran at 0.81-0.90x the per-crop one (larger activations), under
            bf16 autocast at 1.07x (larger matmuls). With BatchNorm in the encoder or head it also decides
            which crops share batch statistics.

    Example:
        >>> from ssl_vision._encoders import ResNetEncoder
        >>> enc = ResNetEncoder("resnet18", cifar_stem=True)
        >>> obj = DINOObjective(embed_dim=enc.embed_dim, encoder=enc, out_dim=256, hidden_dim=128)
        >>> sum(p.requires_grad for p in obj.teacher_encoder.parameters())
        0
    """

    min_views: ClassVar[int] = 2
    center: Tensor
    step: Tensor
    total_steps: Tensor

    def __init__(
        self,
        embed_dim: int,
        encoder: nn.Module | None = None,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        use_bn_in_head: bool = False,
        norm_last_layer: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        warmup_teacher_temp_ratio: float | None = None,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        momentum_end: float = 1.0,
        freeze_last_layer_steps: int = 0,
        group_crops: bool | None = None,
    ) -> None:
        super().__init__()
        if encoder is None:
            raise ValueError(
                "DINO needs the student encoder to build its teacher; pass encoder=... (the pipeline does)"
            )
        if warmup_teacher_temp_ratio is not None:
            if not 0.0 <= warmup_teacher_temp_ratio <= 1.0:
                raise ValueError(f"warmup_teacher_temp_ratio must be in [0, 1], got {warmup_teacher_temp_ratio}")
            if warmup_teacher_temp_steps:
                warnings.warn(
                    f"vision.dino: warmup_teacher_temp_ratio={warmup_teacher_temp_ratio} wins over "
                    f"warmup_teacher_temp_steps={warmup_teacher_temp_steps}",
                    stacklevel=2,
                )
        self.embed_dim = embed_dim
        self.head = DINOHead(embed_dim, out_dim, hidden_dim, bottleneck_dim, use_bn=use_bn_in_head,
                             norm_last_layer=norm_last_layer)  # fmt: skip
        self.teacher_encoder = make_teacher(encoder)
        self.teacher_head = make_teacher(self.head)
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("total_steps", torch.zeros((), dtype=torch.long))  # the run's length, 0 = not yet known
        self.student_temp, self.teacher_temp, self.warmup_teacher_temp = student_temp, teacher_temp, warmup_teacher_temp
        self.warmup_teacher_temp_steps, self.center_momentum = warmup_teacher_temp_steps, center_momentum
        self.warmup_teacher_temp_ratio = warmup_teacher_temp_ratio
        self.momentum, self.momentum_end = momentum, momentum_end
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.group_crops = group_crops
        self.__dict__["_student"] = encoder  # a plain reference, not a submodule (no duplicate parameters)
        self.head.last_weight.register_hook(self._freeze_last_layer)

    def _freeze_last_layer(self, grad: Tensor) -> Tensor:
        return torch.zeros_like(grad) if int(self.step) < self.freeze_last_layer_steps else grad

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the total_steps buffer existed still load (strictly)
        if isinstance(state_dict, dict) and prefix + "step" in state_dict:
            state_dict.setdefault(prefix + "total_steps", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def warmup_steps(self) -> int:
        """Steps of teacher-temperature warm-up: ``ratio x train.steps`` when the ratio is set, else the count.

        The run's length is learnt from the training loop's ``on_step_end(step, max_steps)``
        and kept in the checkpoint; before the first step the warm-up starts either way.
        """
        if self.warmup_teacher_temp_ratio is None:
            return self.warmup_teacher_temp_steps
        total = int(self.total_steps)
        if total == 0:  # before the first step: the warm-up (if any) has just begun
            return 1 if self.warmup_teacher_temp_ratio > 0 else 0
        return round(self.warmup_teacher_temp_ratio * total)

    def current_teacher_temp(self) -> float:
        """The teacher temperature at the current step (linear warm-up, then constant)."""
        step, warmup = int(self.step), self.warmup_steps()
        if step >= warmup:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * step / warmup

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        self.__dict__["_student"] = encoder
        num_global = int(views.extras.get("num_global", 2))
        if len(views) < 2 or num_global < 1:
            raise ValueError(f"DINO needs at least two views with one global crop, got {len(views)} / {num_global}")
        grouped = self._groups(views.batches[0]["x"])
        b = views.batches[0]["x"].shape[0]
        student = torch.cat([self.head(_pooled(encoder, _concat(g))) for g in _crop_groups(views.batches, grouped)])
        student = student.view(len(views), b, -1)
        with torch.no_grad():
            global_groups = _crop_groups(views.batches[:num_global], grouped)
            teacher = torch.cat([self.teacher_head(_pooled(self.teacher_encoder, _concat(g))) for g in global_groups])
            teacher = teacher.view(num_global, b, -1)
        temp = self.current_teacher_temp()
        loss = dino_loss(student, teacher, self.center, self.student_temp, temp)
        entropy = _entropy(teacher, self.center, temp)
        update_center_(self.center, teacher, self.center_momentum)
        self.__dict__["_last"] = (loss.detach(), entropy)
        return {"loss": loss, "teacher_temp": torch.tensor(temp), "teacher_entropy": entropy}

    def _groups(self, x: Tensor) -> bool:
        """One student forward per crop size, or per crop: per crop in fp32 on CPU (faster there), else grouped."""
        if self.group_crops is not None:
            return self.group_crops
        return x.device.type != "cpu" or torch.is_autocast_enabled("cpu")

    def health(self) -> dict[str, float]:
        """Teacher entropy, student-teacher KL (the loss minus the teacher entropy) and the centre's norm.

        The two collapses the DINO paper describes show here: a uniform teacher (entropy
        at ``log(out_dim)``, KL near 0) and a teacher dominated by one dimension (entropy
        near 0, KL near 0).
        """
        last = self.__dict__.get("_last")
        if last is None:
            return {}
        loss, entropy = (float(t) for t in last)
        return {"teacher_entropy": entropy, "student_teacher_kl": max(0.0, loss - entropy),
                "center_norm": float(self.center.float().norm())}  # fmt: skip

    def health_alarms(self, health: Mapping[str, float]) -> list[tuple[str, str]]:
        """Uniform or one-dimension collapse, once the teacher temperature has warmed up and it persists."""
        if not health or int(self.step) < self.warmup_steps():
            return []
        uniform = math.log(self.center.numel())
        entropy, kl = health["teacher_entropy"], health["student_teacher_kl"]
        state = "uniform" if entropy > 0.98 * uniform and kl < 0.05 else "one_dim" if entropy < 0.02 * uniform else ""
        streak = self.__dict__.get("_streak", ("", 0))
        self.__dict__["_streak"] = (state, streak[1] + 1 if state and state == streak[0] else 1 if state else 0)
        if self.__dict__["_streak"][1] < 2:  # it must sit there, not pass through
            return []
        if state == "uniform":
            return [("dino_uniform_teacher", (
                f"the teacher's output is uniform (entropy {entropy:.2f} of log(out_dim) {uniform:.2f}, KL {kl:.3f}): "
                "DINO is not learning. Known remedies: a smaller out_dim (small data: 1,024-4,096), a lower teacher "
                "temperature or a shorter warm-up of it, a higher EMA momentum, more and smaller local crops"
            ))]  # fmt: skip
        return [("dino_one_dimension", (
            f"one output dimension dominates the teacher (entropy {entropy:.3f}, KL {kl:.3f}): collapse. Known "
            "remedies: a faster centre (lower center_momentum), a higher teacher temperature, a lower learning rate"
        ))]  # fmt: skip

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int) -> None:
        """EMA update of the teacher (cosine momentum schedule); advance the step counter."""
        momentum = cosine_schedule(step - 1, max_steps, self.momentum, self.momentum_end)
        student = self.__dict__["_student"]
        ema_update_(self.teacher_encoder, student, momentum)
        ema_update_(self.teacher_head, self.head, momentum)
        self.step.fill_(step)
        self.total_steps.fill_(max_steps)

    def export_encoder(self, encoder: nn.Module) -> nn.Module:
        """The EMA teacher: what DINO evaluates and ships."""
        return self.teacher_encoder

    def train(self, mode: bool = True) -> DINOObjective:
        super().train(mode)
        self.teacher_encoder.eval()  # the teacher always runs in eval mode (no dropout, BN running stats)
        self.teacher_head.eval()
        return self


def _pooled(encoder: nn.Module, batch: dict[str, Any]) -> Tensor:
    """``encoder(batch).pooled``, asking for the pooled vector only where the encoder can skip work for it."""
    inner = encoder
    for attribute in ("module", "_orig_mod", "module"):  # DDP / FSDP, torch.compile, both
        inner = getattr(inner, attribute, inner)
    options = {"pooled_only": True} if getattr(inner, "pools_only_on_request", False) else {}
    features: Features = encoder(batch, **options)
    return features.pooled


def _crop_groups(batches: list[dict[str, Any]], grouped: bool) -> list[list[dict[str, Any]]]:
    """The views of each forward pass: runs of equal shapes when ``grouped``, else one view each."""
    return _same_shape_groups(batches) if grouped else [[batch] for batch in batches]


def _same_shape_groups(batches: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive runs of views whose inputs have equal shapes (global crops, then local crops)."""
    groups: list[list[dict[str, Any]]] = []
    for batch in batches:
        if groups and groups[-1][0]["x"].shape == batch["x"].shape:
            groups[-1].append(batch)
        else:
            groups.append([batch])
    return groups


def _concat(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Views stacked along the batch: ``x`` and every per-sample tensor they all carry (audio ``lengths``)."""
    b = batches[0]["x"].shape[0]
    out: dict[str, Any] = {}
    for key in batches[0]:
        per_sample = [t for t in (v.get(key) for v in batches) if isinstance(t, Tensor) and t.ndim >= 1]
        if len(per_sample) == len(batches) and all(t.shape[0] == b for t in per_sample):
            out[key] = torch.cat(per_sample)
    return out


@torch.no_grad()
def _entropy(teacher: Tensor, center: Tensor, temp: float) -> Tensor:
    probs = F.softmax((teacher.float() - center) / temp, dim=-1)
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
