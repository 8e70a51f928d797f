"""Peer side of the vision benchmark: lightly's documented MAE and DINO example modules on a timm ViT.

The models follow lightly's example scripts (``examples/pytorch/mae.py`` and ``examples/pytorch/dino.py``
and the matching notebooks, lightly 1.6.0 era) as closely as possible. The only intended differences are
the backbone (a configurable, small timm ``VisionTransformer`` instead of ``vit_base_patch32_224`` /
ResNet-18) and that the example's hard-coded sizes (decoder width/depth/heads, DINO head dims) are
constructor arguments. Everything else -- masking, patch targets, MSE loss, teacher/student pattern,
``DINOLoss`` with teacher-temperature warm-up, cosine momentum schedule, last-layer freezing, optimizers and
the default ``MAETransform`` / ``DINOTransform`` augmentations -- is lightly's own code.

Step order (see :func:`mae_train_step` and :func:`dino_train_step`) mirrors the example training loops:

* MAE: ``loss = criterion(*model(images)); loss.backward(); optimizer.step(); optimizer.zero_grad()``
* DINO: momentum update of the teacher *before* the forward pass, then loss, ``backward``,
  ``cancel_last_layer_gradients``, ``optimizer.step()``, ``optimizer.zero_grad()``.
"""

from __future__ import annotations

import copy
import warnings

import torch
from lightly.loss import DINOLoss
from lightly.models import utils
from lightly.models.modules import DINOProjectionHead, MAEDecoderTIMM, MaskedVisionTransformerTIMM
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import DINOTransform, MAETransform
from lightly.utils.scheduler import cosine_schedule
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

__all__ = [
    "LightlyDINO",
    "LightlyMAE",
    "dino_optimizer",
    "dino_train_step",
    "dino_transform",
    "mae_optimizer",
    "mae_train_step",
    "mae_transform",
    "make_vit",
]


def make_vit(
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 192,
    depth: int = 12,
    num_heads: int = 3,
    dynamic_img_size: bool = False,
) -> VisionTransformer:
    """A timm ViT with a class token whose forward returns the (final-normed) CLS token, ``[B, embed_dim]``.

    ``dynamic_img_size=True`` lets the ViT take inputs of another size than ``img_size`` (the position
    embedding is resampled, as DINO's ``interpolate_pos_encoding`` does); DINO needs it for its local crops.
    """
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4,
        num_classes=0,
        class_token=True,
        global_pool="token",
        dynamic_img_size=dynamic_img_size,
    )


class LightlyMAE(nn.Module):
    """lightly's MAE example module (``examples/pytorch/mae.py``) with configurable decoder size."""

    def __init__(
        self,
        vit: VisionTransformer,
        decoder_dim: int = 128,
        decoder_depth: int = 4,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
    ) -> None:
        """Wraps ``vit`` in ``MaskedVisionTransformerTIMM`` (which re-initialises it MAE-style) and adds the decoder."""
        super().__init__()
        self.mask_ratio = mask_ratio
        self.patch_size = vit.patch_embed.patch_size[0]

        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length
        with warnings.catch_warnings():
            # lightly 1.6.0 deprecates MAEDecoderTIMM (FutureWarning) but the documented example still uses it.
            warnings.simplefilter("ignore", FutureWarning)
            self.decoder = MAEDecoderTIMM(
                num_patches=vit.patch_embed.num_patches,
                patch_size=self.patch_size,
                embed_dim=vit.embed_dim,
                decoder_embed_dim=decoder_dim,
                decoder_depth=decoder_depth,
                decoder_num_heads=decoder_heads,
                mlp_ratio=4.0,
                proj_drop_rate=0.0,
                attn_drop_rate=0.0,
            )
        self.criterion = nn.MSELoss()

    def forward_encoder(self, images: Tensor, idx_keep: Tensor | None = None) -> Tensor:
        """Encodes the kept tokens (all tokens when ``idx_keep`` is None), final norm applied."""
        return self.backbone.encode(images=images, idx_keep=idx_keep)

    def forward_decoder(self, x_encoded: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        """Fills masked positions with the mask token, decodes, and predicts pixels of the masked patches."""
        # build decoder input
        batch_size = x_encoded.shape[0]
        x_decode = self.decoder.embed(x_encoded)
        x_masked = utils.repeat_token(self.decoder.mask_token, (batch_size, self.sequence_length))
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))

        # decoder forward pass
        x_decoded = self.decoder.decode(x_masked)

        # predict pixel values for masked tokens
        x_pred = utils.get_at_index(x_decoded, idx_mask)
        x_pred = self.decoder.predict(x_pred)
        return x_pred

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(predictions, targets)`` for the randomly masked patches, as in lightly's example."""
        batch_size = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(
            size=(batch_size, self.sequence_length),
            mask_ratio=self.mask_ratio,
            device=images.device,
        )
        x_encoded = self.forward_encoder(images=images, idx_keep=idx_keep)
        x_pred = self.forward_decoder(x_encoded=x_encoded, idx_keep=idx_keep, idx_mask=idx_mask)

        # get image patches for masked tokens
        patches = utils.patchify(images, self.patch_size)
        # must adjust idx_mask for missing class token
        target = utils.get_at_index(patches, idx_mask - 1)
        return x_pred, target

    def training_loss(self, images: Tensor) -> Tensor:
        """MSE between predicted and true (normalised-image, no per-patch norm) pixels of masked patches."""
        predictions, targets = self(images)
        loss: Tensor = self.criterion(predictions, targets)
        return loss

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """CLS token of the unmasked encoder output after the final norm, ``[B, embed_dim]``."""
        return self.backbone.encode(images)[:, 0]


class LightlyDINO(nn.Module):
    """lightly's DINO example module (``examples/pytorch/dino.py``) on a timm ViT or ResNet backbone.

    A ViT must be built with ``dynamic_img_size=True`` when local crops of another size are used;
    any other backbone (the example's own is a ResNet-18) returns pooled ``[B, input_dim]`` features.
    """

    def __init__(
        self,
        vit: nn.Module,
        hidden_dim: int = 512,
        bottleneck_dim: int = 64,
        output_dim: int = 2048,
        freeze_last_layer: int = 1,
        warmup_teacher_temp_epochs: int = 5,
        input_dim: int | None = None,
    ) -> None:
        """Student = ``vit`` + head; teacher = deep copy of ``vit`` + its own freshly initialised head, no grads."""
        super().__init__()
        input_dim = int(getattr(vit, "embed_dim")) if input_dim is None else input_dim  # noqa: B009
        self.student_backbone = vit
        with warnings.catch_warnings():
            # DINOProjectionHead uses torch.nn.utils.weight_norm, which torch marks deprecated (FutureWarning).
            warnings.simplefilter("ignore", FutureWarning)
            self.student_head = DINOProjectionHead(
                input_dim, hidden_dim, bottleneck_dim, output_dim, freeze_last_layer=freeze_last_layer
            )
            # As in lightly's example the teacher head is a separately initialised head, not a copy.
            self.teacher_head = DINOProjectionHead(input_dim, hidden_dim, bottleneck_dim, output_dim)
        self.teacher_backbone = copy.deepcopy(vit)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

        self.criterion = DINOLoss(output_dim=output_dim, warmup_teacher_temp_epochs=warmup_teacher_temp_epochs)

    def forward(self, x: Tensor) -> Tensor:
        """Student projection of one view."""
        y = self.student_backbone(x).flatten(start_dim=1)
        z: Tensor = self.student_head(y)
        return z

    def forward_teacher(self, x: Tensor) -> Tensor:
        """Teacher projection of one view."""
        y = self.teacher_backbone(x).flatten(start_dim=1)
        z: Tensor = self.teacher_head(y)
        return z

    def training_loss(self, views: list[Tensor], epoch: int) -> Tensor:
        """DINO loss; ``views[:2]`` are the global crops (teacher input), all views go through the student."""
        dynamic = getattr(self.student_backbone, "dynamic_img_size", True)  # a CNN takes any size
        if not dynamic and len({tuple(v.shape[-2:]) for v in views}) > 1:
            raise ValueError("views of different sizes need a ViT built with dynamic_img_size=True")
        global_views = views[:2]
        teacher_out = [self.forward_teacher(view) for view in global_views]
        student_out = [self.forward(view) for view in views]
        loss: Tensor = self.criterion(teacher_out, student_out, epoch=epoch)
        return loss

    def momentum_update(self, step: int, total_steps: int) -> None:
        """EMA of the student into the teacher with momentum ``cosine_schedule(step, total_steps, 0.996, 1)``."""
        momentum = cosine_schedule(step, total_steps, 0.996, 1)
        update_momentum(self.student_backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.student_head, self.teacher_head, m=momentum)

    def after_backward(self, epoch: int) -> None:
        """Drops the student head's last-layer gradients during the first ``freeze_last_layer`` epochs."""
        self.student_head.cancel_last_layer_gradients(current_epoch=epoch)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Teacher backbone output (final-normed CLS token), ``[B, embed_dim]``."""
        return self.teacher_backbone(images).flatten(start_dim=1)


def mae_transform(size: int = 32) -> MAETransform:
    """lightly's ``MAETransform`` at ``size`` px (PIL image -> list of one normalised tensor)."""
    return MAETransform(input_size=size)


def dino_transform(global_size: int = 32, local_size: int = 16, n_local: int = 6) -> DINOTransform:
    """lightly's ``DINOTransform`` (PIL image -> 2 global + ``n_local`` local normalised tensors)."""
    return DINOTransform(global_crop_size=global_size, local_crop_size=local_size, n_local_views=n_local)


def mae_optimizer(model: nn.Module, lr: float = 1.5e-4) -> torch.optim.Optimizer:
    """The MAE example's optimizer: ``AdamW(model.parameters(), lr=1.5e-4)`` (torch default weight decay)."""
    return torch.optim.AdamW(model.parameters(), lr=lr)


def dino_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """The DINO example's optimizer: ``Adam(model.parameters(), lr=0.001)``."""
    return torch.optim.Adam(model.parameters(), lr=lr)


def mae_train_step(model: LightlyMAE, optimizer: torch.optim.Optimizer, images: Tensor) -> float:
    """One step of the MAE example loop; returns the loss."""
    loss = model.training_loss(images)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


def dino_train_step(
    model: LightlyDINO,
    optimizer: torch.optim.Optimizer,
    views: list[Tensor],
    epoch: int,
    momentum_step: int,
    momentum_total: int,
) -> float:
    """One step of the DINO example loop; returns the loss.

    lightly's example schedules the momentum per epoch (``cosine_schedule(epoch, epochs, 0.996, 1)``), i.e.
    pass ``momentum_step=epoch, momentum_total=epochs`` to reproduce it exactly.
    """
    model.momentum_update(momentum_step, momentum_total)
    loss = model.training_loss(views, epoch=epoch)
    loss.backward()
    # We only cancel gradients of student head.
    model.after_backward(epoch)
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


if __name__ == "__main__":
    import time

    import numpy as np
    from PIL import Image

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def random_pils(n: int) -> list[Image.Image]:
        return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]

    # --- MAE ---------------------------------------------------------------------------------------
    mae = LightlyMAE(make_vit())
    mae_opt = mae_optimizer(mae)
    t_mae = mae_transform(32)
    batch = torch.stack([t_mae(img)[0] for img in random_pils(16)])
    print("MAE batch", tuple(batch.shape))
    for step in range(3):
        print(f"MAE step {step} loss {mae_train_step(mae, mae_opt, batch):.4f}")
    print("MAE features", tuple(mae.features(batch).shape))

    # --- DINO --------------------------------------------------------------------------------------
    dino = LightlyDINO(make_vit(dynamic_img_size=True))
    dino_opt = dino_optimizer(dino)
    t_dino = dino_transform(32, 16, 6)
    per_image = [t_dino(img) for img in random_pils(8)]
    views = [torch.stack(v) for v in zip(*per_image, strict=True)]
    print("DINO views", [tuple(v.shape) for v in views])
    for step in range(3):
        loss = dino_train_step(dino, dino_opt, views, epoch=0, momentum_step=step, momentum_total=3)
        print(f"DINO step {step} loss {loss:.4f}")
    print("DINO features", tuple(dino.features(views[0]).shape))

    # --- throughput (1 thread) ---------------------------------------------------------------------
    x = torch.randn(128, 3, 32, 32)
    t0 = time.perf_counter()
    for _ in range(3):
        mae_train_step(mae, mae_opt, x)
    dt = time.perf_counter() - t0
    print(f"MAE  batch 128: {3 * 128 / dt:.1f} samples/s ({dt / 3:.2f} s/step)")

    big_views = [torch.randn(64, 3, 32, 32) for _ in range(2)] + [torch.randn(64, 3, 16, 16) for _ in range(6)]
    t0 = time.perf_counter()
    for step in range(3):
        dino_train_step(dino, dino_opt, big_views, epoch=0, momentum_step=step, momentum_total=3)
    dt = time.perf_counter() - t0
    print(f"DINO batch 64 (2x32px + 6x16px): {3 * 64 / dt:.1f} samples/s ({dt / 3:.2f} s/step)")
