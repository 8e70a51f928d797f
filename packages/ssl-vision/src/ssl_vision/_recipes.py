"""Recipes: MAE and DINO with the papers' hyper-parameters, and CIFAR-sized presets for a CPU.

``preset="cifar"`` (the default) is sized so that a few epochs on the 10k-image CIFAR-10
subset fit a 2-core CPU with bf16 autocast where the CPU has it natively
(``train.precision="auto"``; MAE: a ViT-Tiny at 32 px with 4-pixel patches; DINO: a CIFAR
ResNet-18, or that ViT with ``backbone="vit-tiny"``); ``preset="paper"`` is the published
ImageNet setting (needs GPUs). Pass the data folder with ``--root``
(``../shared/data/cifar10`` here); without it CIFAR-10 is downloaded by torchvision.

Parameters come from the command line (``ssl run vision.mae --recipe preset=paper
--recipe epochs=10``) or a pipeline file (``recipe = {name = "vision.mae", preset =
"paper"}``); ``None`` means the preset's value. Warm-ups are fractions of ``train.steps``
(``train.warmup_ratio``, DINO's ``warmup_teacher_temp_ratio``), so ``--set train.steps=...``
shortens them with the run.

Example:
    >>> mae()["encoder"]["patch_size"], dino(preset="paper")["objective"]["out_dim"]
    (4, 65536)
"""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = ["dino", "mae"]

_EVALUATE: list[dict[str, Any]] = [
    {"name": "core.knn", "k": [20, 200], "temperature": 0.07},
    {"name": "core.linear_probe"},
]

CIFAR_TRAIN_SIZE = 10_000
"""Images in the CIFAR-10 subset of ``../shared/data/cifar10`` (the ``cifar`` presets' epoch)."""

IMAGENET_TRAIN_SIZE = 1_281_167
"""Images in ImageNet-1k's train split (the ``paper`` presets' epoch)."""


def _steps(epochs: float, batch_size: int, train_size: int) -> int:
    return max(1, math.ceil(epochs * train_size / batch_size))


def _check(recipe: str, preset: str, epochs: float | None, train_size: int | None) -> None:
    if preset not in ("cifar", "paper"):
        raise ValueError(f"{recipe} has presets 'cifar' and 'paper', not {preset!r}")
    if epochs is not None and not epochs > 0:
        raise ValueError(f"{recipe}: epochs must be positive, got {epochs}")
    if train_size is not None and train_size < 1:
        raise ValueError(f"{recipe}: train_size must be at least 1, got {train_size}")


def mae(
    preset: Literal["cifar", "paper"] = "cifar", epochs: float | None = None, train_size: int | None = None
) -> dict[str, Any]:
    """MAE: 75% random patch masking, norm-pix MSE on the masked patches, AdamW.

    ``cifar``: ViT-Tiny/4 at 32 px, decoder 128 x 4, batch 128, bf16, 3 epochs of the
    10,000-image subset, and for few-epoch CPU runs a constant lr 1.5e-4 with torch's AdamW
    defaults (betas 0.9/0.999, weight decay 0.01, no warm-up): after 3 epochs it gave kNN
    31.4% against 29.1% for the paper's schedule scaled up (docs/vision.md). ``paper``:
    ViT-B/16 at 224 px, decoder 512 x 8, batch 4096, lr 1.5e-4 x 4096 / 256, betas 0.9/0.95,
    weight decay 0.05, 800 epochs of ImageNet-1k with 40 of warm-up (``warmup_ratio`` 0.05),
    then cosine (He et al., 2022), the image folder streamed from disk (``data.stream``).

    Args:
        preset: ``"cifar"`` or ``"paper"``.
        epochs: training length in epochs (``train.steps`` = epochs x train_size / batch);
            ``None``: the preset's (3 / 800).
        train_size: images per epoch; ``None``: the preset's (10,000 / 1,281,167).

    Example:
        >>> cfg = mae(preset="paper", epochs=400)
        >>> cfg["train"]["steps"], cfg["train"]["warmup_ratio"]
        (125114, 0.05)
        >>> mae(epochs=1)["train"]["steps"]
        79
    """
    _check("vision.mae", preset, epochs, train_size)
    train: dict[str, Any]
    if preset == "cifar":
        batch, image, patch, vit = 128, 32, 4, "tiny"
        decoder = {"decoder_dim": 128, "decoder_depth": 4, "decoder_heads": 4}
        data = "vision.cifar10"
        epochs = 3.0 if epochs is None else epochs
        train_size = CIFAR_TRAIN_SIZE if train_size is None else train_size
        # constant lr, no warm-up (warmup_ratio left unset, so --set train.warmup_steps=N still works)
        train = {"lr": 1.5e-4, "betas": [0.9, 0.999], "weight_decay": 0.01, "min_lr_ratio": 1.0}
    else:
        batch, image, patch, vit = 4096, 224, 16, "base"
        decoder = {"decoder_dim": 512, "decoder_depth": 8, "decoder_heads": 16}
        data = "vision.image_folder"
        epochs = 800.0 if epochs is None else epochs
        train_size = IMAGENET_TRAIN_SIZE if train_size is None else train_size
        train = {
            "lr": 1.5e-4 * batch / 256,
            "betas": [0.9, 0.95],
            "weight_decay": 0.05,
            "min_lr_ratio": 0.0,
            "warmup_ratio": 40 / 800,  # 40 warm-up epochs of 800
        }
    return {
        "name": f"mae-{preset}",
        "seed": 0,
        "data": {"name": data} if preset == "cifar" else {"name": data, "image_size": image, "stream": True},
        "encoder": {"name": "vision.vit", "preset": vit, "patch_size": patch, "pos_embed": "sincos"},
        "views": {"name": "vision.random_mask", "patch_size": patch, "mask_ratio": 0.75, "crop_scale": [0.2, 1.0]},
        "objective": {"name": "vision.mae", "patch_size": patch, "norm_pix_loss": True, **decoder},
        "train": {
            "steps": _steps(epochs, batch, train_size),
            "batch_size": batch,
            **train,
            "precision": "auto",
            "log_every": 10,
            "eval_batch_size": 512,
        },
        "evaluate": [dict(e) for e in _EVALUATE],
    }


def dino(
    preset: Literal["cifar", "paper"] = "cifar",
    epochs: float | None = None,
    train_size: int | None = None,
    backbone: Literal["resnet18", "vit-tiny"] | None = None,
) -> dict[str, Any]:
    """DINO: multi-crop self-distillation (Caron et al., 2021), with small-data presets.

    ``cifar`` (chosen by measurement on the 10k-image CIFAR-10 subset, docs/vision.md): batch
    64, bf16 (where native), 16 px local crops, teacher temperature a constant 0.04 (the paper's warm-up to
    0.07 drifts a small-data teacher towards a uniform output), last layer frozen for the first
    epoch, gradient clipping 3.0, AdamW with a 10% warm-up and cosine decay.

    * ``backbone="resnet18"`` (the default): a CIFAR ResNet-18 (3 x 3 stem, no max-pool),
      2 x 32 px + 4 x 16 px crops, head 2048 / 256 / 4096, EMA momentum 0.99 -> 1, lr 5e-4,
      weight decay 1e-4; 3 epochs.
    * ``backbone="vit-tiny"``: ViT-Tiny/4, 2 x 32 px + 6 x 16 px crops, head 512 / 64 / 2048,
      EMA momentum 0.996 -> 1, lr 2.5e-4, weight decay 0.04 -> 0.4; 3 epochs. It learns more
      slowly than the ResNet at this scale (docs/vision.md).

    ``paper``: ViT-S/16, 2 x 224 + 10 x 96 crops, head 2048 / 256 / 65536, batch 1024,
    lr 5e-4 x 1024 / 256, teacher temperature 0.04 -> 0.07 over 30 of 100 epochs, EMA momentum
    0.996 -> 1, weight decay 0.04 -> 0.4, 100 epochs of ImageNet-1k (10 warm-up), the image
    folder streamed from disk (``data.stream``).

    Args:
        preset: ``"cifar"`` or ``"paper"``.
        epochs: training length in epochs; ``None``: the preset's (3 / 100).
        train_size: images per epoch; ``None``: the preset's (10,000 / 1,281,167).
        backbone: ``cifar`` only: ``"resnet18"`` (default) or ``"vit-tiny"``.

    Example:
        >>> cfg = dino(epochs=4)
        >>> cfg["encoder"]["name"], cfg["train"]["steps"], cfg["objective"]["teacher_temp"]
        ('vision.resnet', 625, 0.04)
        >>> dino(backbone="vit-tiny")["objective"]["out_dim"], dino(preset="paper")["objective"]["out_dim"]
        (2048, 65536)
    """
    _check("vision.dino", preset, epochs, train_size)
    if preset == "paper" and backbone is not None:
        raise ValueError(
            f"vision.dino: backbone is a 'cifar' preset choice; the paper preset is ViT-S/16, got {backbone!r}"
        )
    if backbone not in (None, "resnet18", "vit-tiny"):
        raise ValueError(f"vision.dino: backbone is 'resnet18' or 'vit-tiny', got {backbone!r}")
    teacher_temp: dict[str, Any] = {"teacher_temp": 0.04, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_ratio": 0.0}
    if preset == "cifar":
        batch, data, local = 64, "vision.cifar10", 16
        epochs = 3.0 if epochs is None else epochs
        train_size = CIFAR_TRAIN_SIZE if train_size is None else train_size
        if backbone in (None, "resnet18"):
            encoder: dict[str, Any] = {"name": "vision.resnet", "model": "resnet18", "cifar_stem": True}
            n_local, momentum = 4, 0.99
            head = {"hidden_dim": 2048, "bottleneck_dim": 256, "out_dim": 4096}
            lr, weight_decay = 5e-4, (1e-4, 1e-4)
        else:
            encoder = {"name": "vision.vit", "preset": "tiny", "patch_size": 4}
            n_local, momentum = 6, 0.996
            head = {"hidden_dim": 512, "bottleneck_dim": 64, "out_dim": 2048}
            lr, weight_decay = 2.5e-4, (0.04, 0.4)
    else:
        batch, data, local, n_local, momentum = 1024, "vision.image_folder", 96, 10, 0.996
        encoder = {"name": "vision.vit", "preset": "small", "patch_size": 16}
        head = {"hidden_dim": 2048, "bottleneck_dim": 256, "out_dim": 65536}
        lr, weight_decay = 5e-4 * batch / 256, (0.04, 0.4)
        teacher_temp = {"teacher_temp": 0.07, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_ratio": 0.3}
        epochs = 100.0 if epochs is None else epochs
        train_size = IMAGENET_TRAIN_SIZE if train_size is None else train_size
    return {
        "name": f"dino-{preset}" if preset == "paper" else f"dino-{preset}-{backbone or 'resnet18'}",
        "seed": 0,
        "data": {"name": data} if preset == "cifar" else {"name": data, "image_size": 224, "stream": True},
        "encoder": encoder,
        "views": {"name": "vision.multi_crop", "local_size": local, "num_local": n_local},
        "objective": {
            "name": "vision.dino",
            **head,
            **teacher_temp,
            "momentum": momentum,
            "freeze_last_layer_steps": _steps(1, batch, train_size),  # one epoch
        },
        "train": {
            "steps": _steps(epochs, batch, train_size),
            "batch_size": batch,
            "lr": lr,
            "min_lr_ratio": 1e-6 / lr,
            "weight_decay": weight_decay[0],
            "weight_decay_end": weight_decay[1],
            "grad_clip": 3.0,
            "warmup_ratio": 0.1,  # DINO: 10 of 100 epochs
            "precision": "auto",
            "log_every": 10,
            "eval_batch_size": 512,
        },
        "evaluate": [dict(e) for e in _EVALUATE],
    }
