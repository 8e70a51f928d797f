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

__all__ = ["dino", "dino_settings", "mae"]

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


SMALL_DATA_SIZE = 100_000
"""Below this many training samples, DINO's teacher temperature stays at 0.04 (no warm-up to 0.07)."""


def _power_of_two(x: float) -> int:
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def dino_settings(
    train_size: int, batch_size: int, steps: int, image_size: int | None = None
) -> dict[str, dict[str, Any]]:
    """DINO's settings scaled to a dataset, a batch size and a run length, for any encoder.

    The rules reproduce the two measured points, the 10k-image CIFAR-10 preset (batch 64, 469
    steps) and the paper's ImageNet setting (batch 1024, 100 epochs); docs/vision.md has the
    runs behind them:

    * ``out_dim``: the power of two nearest ``train_size / 2.5``, within 1,024-65,536
      (10k samples: 4,096; ImageNet: 65,536). Head 2048 / 256 below it.
    * teacher temperature: 0.04 constant below 100,000 samples (the warm-up to 0.07 drifts a
      small-data teacher towards a uniform output); the paper's 0.04 -> 0.07 over 30% of the
      run from there on.
    * EMA ``momentum`` = 1 - 1 / h, where the teacher averages over h steps: the paper's 250 at
      batch 1024, growing as (1024 / batch)^1.5 for smaller batches (DINO's README: 0.9995 at
      batch 256), but at most a fifth of the run, so that the teacher moves within the budget,
      and at least 100 steps. Cosine to 1.
    * the last layer is frozen for one epoch (``train_size / batch_size`` steps), at most half
      the run.
    * with ``image_size``: local crops of 96/224 of the image, rounded to 8 px (32 px: 16,
      224 px: 96), and 10 of them from 96 px images on (the paper), else 4 (each costs a CNN a
      quarter of a global crop at 32 px).

    Args:
        train_size: samples in one epoch.
        batch_size: samples per step.
        steps: optimizer steps in the run.
        image_size: the global crop's side in pixels; ``None`` leaves ``views`` empty (audio,
            graphs and other encoders bring their own crops).

    Returns:
        ``{"objective": {...}, "views": {...}}``, keys as ``vision.dino`` and
        ``vision.multi_crop`` take them.

    Example:
        >>> s = dino_settings(train_size=10_000, batch_size=64, steps=469, image_size=32)
        >>> s["objective"]["out_dim"], s["objective"]["momentum"], s["views"]["local_size"]
        (4096, 0.99, 16)
        >>> dino_settings(1_281_167, 1024, 125_117)["objective"]["momentum"]
        0.996
    """
    for name, value in (("train_size", train_size), ("batch_size", batch_size), ("steps", steps)):
        if value < 1:
            raise ValueError(f"dino_settings: {name} must be at least 1, got {value}")
    if image_size is not None and image_size < 8:
        raise ValueError(f"dino_settings: image_size must be at least 8 px, got {image_size}")
    out_dim = min(65_536, max(1_024, _power_of_two(train_size / 2.5)))
    horizon = max(100.0, min(250.0 * (1024 / batch_size) ** 1.5, steps / 5))
    if train_size < SMALL_DATA_SIZE:
        teacher: dict[str, Any] = {"teacher_temp": 0.04, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_ratio": 0.0}
    else:
        teacher = {"teacher_temp": 0.07, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_ratio": 0.3}
    objective: dict[str, Any] = {
        "out_dim": out_dim,
        "hidden_dim": 2048,
        "bottleneck_dim": 256,
        **teacher,
        "momentum": round(1.0 - 1.0 / horizon, 6),
        "freeze_last_layer_steps": min(math.ceil(train_size / batch_size), max(1, steps // 2)),
    }
    views: dict[str, Any] = {}
    if image_size is not None:
        views = {
            "local_size": max(8, round(image_size * 96 / 224 / 8) * 8),
            "num_local": 10 if image_size >= 96 else 4,
        }
    return {"objective": objective, "views": views}


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
    epoch, gradient clipping 3.0, AdamW with a 10% warm-up and cosine decay. The head, the
    teacher temperature, the EMA momentum and the crops come from :func:`dino_settings`, so
    they follow ``epochs`` and ``train_size``.

    * ``backbone="resnet18"`` (the default): a CIFAR ResNet-18 (3 x 3 stem, no max-pool),
      2 x 32 px + 4 x 16 px crops, head 2048 / 256 / 4096, EMA momentum 0.99 -> 1 (at 3
      epochs; longer runs get a slower teacher), lr 5e-4, weight decay 1e-4; 3 epochs.
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
    if preset == "cifar":
        batch, data, image = 64, "vision.cifar10", 32
        epochs = 3.0 if epochs is None else epochs
        train_size = CIFAR_TRAIN_SIZE if train_size is None else train_size
        steps = _steps(epochs, batch, train_size)
        scaled = dino_settings(train_size, batch, steps, image_size=image)
        if backbone in (None, "resnet18"):
            encoder: dict[str, Any] = {"name": "vision.resnet", "model": "resnet18", "cifar_stem": True}
            lr, weight_decay = 5e-4, (1e-4, 1e-4)
        else:  # the ViT's own measured head, crops and momentum (docs/vision.md, run G)
            encoder = {"name": "vision.vit", "preset": "tiny", "patch_size": 4}
            scaled["objective"].update(hidden_dim=512, bottleneck_dim=64, out_dim=2048, momentum=0.996)
            scaled["views"]["num_local"] = 6
            lr, weight_decay = 2.5e-4, (0.04, 0.4)
    else:
        batch, data, image = 1024, "vision.image_folder", 224
        encoder = {"name": "vision.vit", "preset": "small", "patch_size": 16}
        lr, weight_decay = 5e-4 * batch / 256, (0.04, 0.4)
        epochs = 100.0 if epochs is None else epochs
        train_size = IMAGENET_TRAIN_SIZE if train_size is None else train_size
        steps = _steps(epochs, batch, train_size)
        scaled = dino_settings(train_size, batch, steps, image_size=image)
    return {
        "name": f"dino-{preset}" if preset == "paper" else f"dino-{preset}-{backbone or 'resnet18'}",
        "seed": 0,
        "data": {"name": data} if preset == "cifar" else {"name": data, "image_size": image, "stream": True},
        "encoder": encoder,
        "views": {"name": "vision.multi_crop", **scaled["views"]},
        "objective": {"name": "vision.dino", **scaled["objective"]},
        "train": {
            "steps": steps,
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
