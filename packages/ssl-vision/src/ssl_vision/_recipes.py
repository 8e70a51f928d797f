"""Recipes: MAE and DINO with the papers' hyper-parameters, and CIFAR-sized presets for a CPU.

``preset="cifar"`` (the default) is a ViT-Tiny at 32 px with 4-pixel patches (64 tokens),
sized so that a few epochs on the 10k-image CIFAR-10 subset fit a 2-core CPU with bf16
autocast; ``preset="paper"`` is the published ImageNet setting (needs GPUs). Pass the
data folder with ``--root`` (``../shared/data/cifar10`` here); without it CIFAR-10 is
downloaded by torchvision.

Example:
    >>> mae()["encoder"]["patch_size"], dino(preset="paper")["objective"]["out_dim"]
    (4, 65536)
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["dino", "mae"]

_EVALUATE: list[dict[str, Any]] = [
    {"name": "core.knn", "k": [20, 200], "temperature": 0.07},
    {"name": "core.linear_probe"},
]


def _steps(epochs: float, batch_size: int, train_size: int) -> int:
    return max(1, math.ceil(epochs * train_size / batch_size))


def mae(preset: str = "cifar", epochs: float = 3, train_size: int = 10_000) -> dict[str, Any]:
    """MAE: 75% random patch masking, norm-pix MSE on the masked patches, AdamW.

    ``cifar``: ViT-Tiny/4 at 32 px, decoder 128 x 4, batch 128, bf16, and for few-epoch CPU
    runs a constant lr 1.5e-4 with torch's AdamW defaults (betas 0.9/0.999, weight decay 0.01):
    after 3 epochs it gave kNN 31.4% against 29.1% for the paper's schedule scaled up
    (docs/vision.md). ``paper``: ViT-B/16 at 224 px, decoder 512 x 8, batch 4096, lr
    1.5e-4 x 4096 / 256, betas 0.9/0.95, weight decay 0.05, 800 epochs with 40 of warm-up, then
    cosine (He et al., 2022).
    """
    if preset == "cifar":
        batch, image, patch, vit = 128, 32, 4, "tiny"
        decoder = {"decoder_dim": 128, "decoder_depth": 4, "decoder_heads": 4}
        lr, warmup_epochs, precision, data = 1.5e-4, 0.0, "bf16", "vision.cifar10"
        optimizer = {"betas": [0.9, 0.999], "weight_decay": 0.01, "min_lr_ratio": 1.0}  # constant lr
    elif preset == "paper":
        batch, image, patch, vit = 4096, 224, 16, "base"
        decoder = {"decoder_dim": 512, "decoder_depth": 8, "decoder_heads": 16}
        lr, warmup_epochs, precision, data = 1.5e-4 * batch / 256, 40.0, "bf16", "vision.image_folder"
        optimizer = {"betas": [0.9, 0.95], "weight_decay": 0.05, "min_lr_ratio": 0.0}
        epochs, train_size = 800 if epochs == 3 else epochs, 1_281_167 if train_size == 10_000 else train_size
    else:
        raise ValueError(f"vision.mae has presets 'cifar' and 'paper', not {preset!r}")
    steps = _steps(epochs, batch, train_size)
    return {
        "name": f"mae-{preset}",
        "seed": 0,
        "data": {"name": data} if preset == "cifar" else {"name": data, "image_size": image},
        "encoder": {"name": "vision.vit", "preset": vit, "patch_size": patch, "pos_embed": "sincos"},
        "views": {"name": "vision.random_mask", "patch_size": patch, "mask_ratio": 0.75, "crop_scale": [0.2, 1.0]},
        "objective": {"name": "vision.mae", "patch_size": patch, "norm_pix_loss": True, **decoder},
        "train": {
            "steps": steps,
            "batch_size": batch,
            "lr": lr,
            **optimizer,
            "warmup_steps": _steps(warmup_epochs, batch, train_size) if warmup_epochs else 0,
            "precision": precision,
            "log_every": 10,
            "eval_batch_size": 512,
        },
        "evaluate": [dict(e) for e in _EVALUATE],
    }


def dino(preset: str = "cifar", epochs: float = 2, train_size: int = 10_000) -> dict[str, Any]:
    """DINO: multi-crop self-distillation with the paper's schedules (Caron et al., 2021).

    Both presets: teacher momentum 0.996 -> 1 (cosine), centre momentum 0.9, teacher
    temperature 0.04 -> 0.07 (warm-up), student 0.1, weight decay 0.04 -> 0.4 (cosine),
    gradient clipping 3.0, last layer frozen for the first epoch, AdamW with lr warm-up.
    ``cifar``: ViT-Tiny/4, 2 x 32 px + 6 x 16 px crops, head 512 / 64 / 2048, batch 64,
    lr 5e-4 x batch / 256 x 8 (short schedules need the larger rate), bf16. ``paper``:
    ViT-S/16, 2 x 224 + 10 x 96 crops, head 2048 / 256 / 65536, batch 1024,
    lr 5e-4 x 1024 / 256, 100 epochs (10 warm-up, 30 of temperature warm-up).
    """
    if preset == "cifar":
        batch, image, patch, vit, local, n_local = 64, 32, 4, "tiny", 16, 6
        head = {"hidden_dim": 512, "bottleneck_dim": 64, "out_dim": 2048}
        lr, warmup_epochs, temp_epochs, precision, data = (
            5e-4 * batch / 256 * 8,
            epochs / 10,
            epochs * 0.3,
            "bf16",
            "vision.cifar10",
        )
    elif preset == "paper":
        batch, image, patch, vit, local, n_local = 1024, 224, 16, "small", 96, 10
        head = {"hidden_dim": 2048, "bottleneck_dim": 256, "out_dim": 65536}
        epochs, train_size = 100 if epochs == 2 else epochs, 1_281_167 if train_size == 10_000 else train_size
        lr, warmup_epochs, temp_epochs, precision, data = 5e-4 * batch / 256, 10.0, 30.0, "bf16", "vision.image_folder"
    else:
        raise ValueError(f"vision.dino has presets 'cifar' and 'paper', not {preset!r}")
    return {
        "name": f"dino-{preset}",
        "seed": 0,
        "data": {"name": data} if preset == "cifar" else {"name": data, "image_size": image},
        "encoder": {"name": "vision.vit", "preset": vit, "patch_size": patch},
        "views": {"name": "vision.multi_crop", "local_size": local, "num_local": n_local},
        "objective": {
            "name": "vision.dino",
            **head,
            "teacher_temp": 0.07,
            "warmup_teacher_temp": 0.04,
            "warmup_teacher_temp_steps": _steps(temp_epochs, batch, train_size),
            "momentum": 0.996,
            "freeze_last_layer_steps": _steps(1, batch, train_size),
        },
        "train": {
            "steps": _steps(epochs, batch, train_size),
            "batch_size": batch,
            "lr": lr,
            "min_lr_ratio": 1e-6 / lr,
            "weight_decay": 0.04,
            "weight_decay_end": 0.4,
            "grad_clip": 3.0,
            "warmup_steps": _steps(warmup_epochs, batch, train_size),
            "precision": precision,
            "log_every": 10,
            "eval_batch_size": 512,
        },
        "evaluate": [dict(e) for e in _EVALUATE],
    }
