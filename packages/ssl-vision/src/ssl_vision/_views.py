"""View generators: MAE's crop + flip + random patch mask, and DINO's multi-crop.

Both take a batch of ``uint8`` images ``{"x": [B, 3, H, W]}`` on the training device and
return float views in ``[0, 1]`` (the encoder normalises). ``backend="batched"`` (the
default) transforms the whole batch at once with :mod:`ssl_vision._augment`;
``backend="torchvision"`` runs the equivalent ``torchvision.transforms.v2`` pipeline
image by image (the reference, and what a DataLoader-worker pipeline does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ssl_core import ViewGeneratorBase, Views

from . import _augment as aug
from ._encoders import to_unit_float

__all__ = ["MAEViews", "MultiCropViews", "random_patch_mask"]

_BACKENDS = ("batched", "torchvision")


def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float, generator: torch.Generator) -> Tensor:
    """MAE's per-sample random mask, ``[B, N]`` bool with exactly ``round(N * ratio)`` ``True`` per row.

    Example:
        >>> m = random_patch_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
        >>> m.sum(1).tolist()
        [12, 12]
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    num_masked = round(num_patches * mask_ratio)
    noise = torch.rand(batch_size, num_patches, generator=generator, device=generator.device)
    ranks = noise.argsort(1).argsort(1)
    return ranks < num_masked


def _images(batch: dict[str, Any]) -> Tensor:
    images = batch.get("x")
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"image views need batch['x'] as [B, 3, H, W] images, got {shape}")
    return images


def _pair(values: Sequence[float]) -> tuple[float, float]:
    if len(values) != 2:
        raise ValueError(f"expected a (low, high) pair, got {values!r}")
    return float(values[0]), float(values[1])


def _no_autocast(images: Tensor) -> torch.autocast:
    """Augmentation runs in float32 even when the training step runs under autocast."""
    return torch.autocast(images.device.type, enabled=False)


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")


def _per_image(images: Tensor, transform: Callable[[Tensor], Tensor], generator: torch.Generator) -> Tensor:
    """Run a torchvision v2 transform image by image, its global RNG seeded from ``generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in images])


class _ImageViews(ViewGeneratorBase):
    """Shared ``__call__``: check the images, run ``_views`` outside autocast, keep the batch's other keys."""

    modality: ClassVar[str] = "image"

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        images = _images(batch)
        with _no_autocast(images):
            views = self._views(images, generator)
        views.batches = [{**batch, **view} for view in views.batches]  # keep labels and other keys
        return views

    def _views(self, images: Tensor, generator: torch.Generator) -> Views:  # pragma: no cover
        raise NotImplementedError


class MAEViews(_ImageViews):
    """One random-resized crop (scale 0.2-1, flip) per image and a random patch mask (MAE).

    Args:
        image_size: output side; filled from the dataset.
        patch_size: the encoder's patch side (the mask has ``(image_size / patch_size)**2`` tokens).
        mask_ratio: the fraction of patches masked in every image.

    Example:
        >>> views = MAEViews(image_size=32, patch_size=4)
        >>> out = views({"x": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)}, torch.Generator().manual_seed(0))
        >>> tuple(out.batches[0]["x"].shape), int(out.masks[0].sum(1)[0])
        ((2, 3, 32, 32), 48)
    """

    modality: ClassVar[str] = "image"
    num_views: ClassVar[int] = 1

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        mask_ratio: float = 0.75,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        flip_p: float = 0.5,
        backend: str = "batched",
    ) -> None:
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not divisible by patch size {patch_size}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        _check_backend(backend)
        self.image_size, self.patch_size, self.mask_ratio = image_size, patch_size, mask_ratio
        self.crop_scale, self.flip_p, self.backend = _pair(crop_scale), flip_p, backend
        self.num_patches = (image_size // patch_size) ** 2
        self._transform: Callable[[Tensor], Tensor] | None = None

    def _torchvision(self) -> Callable[[Tensor], Tensor]:
        if self._transform is None:
            from torchvision.transforms import v2

            self._transform = v2.Compose(
                [
                    v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, antialias=True),
                    v2.RandomHorizontalFlip(self.flip_p),
                    v2.ToDtype(torch.float32, scale=True),
                ]
            )
        return self._transform

    def _views(self, images: Tensor, generator: torch.Generator) -> Views:
        if self.backend == "torchvision":
            crops = _per_image(images, self._torchvision(), generator)
        else:
            crops = aug.random_resized_crop(
                to_unit_float(images), self.image_size, generator, self.crop_scale, flip_p=self.flip_p
            )
        mask = random_patch_mask(images.shape[0], self.num_patches, self.mask_ratio, generator)
        return Views(batches=[{"x": crops}], masks=[mask.to(crops.device)])


class MultiCropViews(_ImageViews):
    """DINO's multi-crop: ``num_global`` large and ``num_local`` small crops of every image.

    Defaults are DINO's (and lightly's ``DINOTransform``): global crops scale 0.4-1,
    local crops 0.05-0.4, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8,
    grayscale p 0.2, Gaussian blur p 1.0 / 0.1 / 0.5 (first global / second global /
    locals, sigma 0.1-2), solarisation p 0.2 on the second global crop. Views come back
    global crops first; ``extras["num_global"]`` says how many.

    Args:
        image_size: the global crop side (filled from the dataset unless ``global_size`` is set).
        local_size: the local crop side.

    Example:
        >>> views = MultiCropViews(image_size=32, local_size=16, num_local=2)
        >>> out = views({"x": torch.zeros(4, 3, 32, 32, dtype=torch.uint8)}, torch.Generator().manual_seed(0))
        >>> [tuple(b["x"].shape[-2:]) for b in out.batches]
        [(32, 32), (32, 32), (16, 16), (16, 16)]
    """

    modality: ClassVar[str] = "image"

    def __init__(
        self,
        image_size: int = 224,
        local_size: int = 96,
        num_global: int = 2,
        num_local: int = 6,
        global_size: int | None = None,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        flip_p: float = 0.5,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        gray_p: float = 0.2,
        blur_p: Sequence[float] = (1.0, 0.1, 0.5),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: Sequence[float] = (0.0, 0.2, 0.0),
        backend: str = "batched",
    ) -> None:
        if num_global < 1 or num_local < 0:
            raise ValueError(f"need at least one global crop and no negative local count, got {num_global}/{num_local}")
        if len(blur_p) != 3 or len(solarize_p) != 3:
            raise ValueError("blur_p and solarize_p take three probabilities: first global, other globals, locals")
        _check_backend(backend)
        self.global_size = global_size or image_size
        self.local_size, self.num_global, self.num_local = local_size, num_global, num_local
        self.num_views = num_global + num_local
        self.global_scale, self.local_scale = _pair(global_scale), _pair(local_scale)
        self.flip_p, self.jitter_p, self.gray_p = flip_p, jitter_p, gray_p
        self.jitter = (brightness, contrast, saturation, hue)
        self.blur_p, self.blur_sigma, self.solarize_p = tuple(blur_p), _pair(blur_sigma), tuple(solarize_p)
        self.backend = backend
        self._transforms: dict[int, Callable[[Tensor], Tensor]] = {}

    def _probabilities(self, kind: int) -> tuple[float, float]:
        return self.blur_p[kind], self.solarize_p[kind]

    def _batched(self, images: Tensor, size: int, scale: tuple[float, float], kind: int, g: torch.Generator) -> Tensor:
        blur_p, solarize_p = self._probabilities(kind)
        x = aug.random_resized_crop(images, size, g, scale, flip_p=self.flip_p)
        x = aug.color_jitter(x, g, *self.jitter, p=self.jitter_p)
        x = aug.grayscale(x, g, self.gray_p)
        x = aug.gaussian_blur(x, g, blur_p, self.blur_sigma)
        return aug.solarize(x, g, solarize_p)

    def _torchvision(self, size: int, scale: tuple[float, float], kind: int) -> Callable[[Tensor], Tensor]:
        if kind not in self._transforms:
            from torchvision.transforms import v2

            blur_p, solarize_p = self._probabilities(kind)
            kernel = min(2 * int(3 * self.blur_sigma[1] + 0.999) + 1, 2 * ((size - 1) // 2) + 1)
            self._transforms[kind] = v2.Compose(
                [
                    v2.RandomResizedCrop(size, scale=scale, antialias=True),
                    v2.RandomHorizontalFlip(self.flip_p),
                    v2.RandomApply([v2.ColorJitter(*self.jitter)], p=self.jitter_p),
                    v2.RandomGrayscale(self.gray_p),
                    v2.RandomApply([v2.GaussianBlur(kernel, self.blur_sigma)], p=blur_p),
                    v2.RandomSolarize(threshold=128, p=solarize_p),
                    v2.ToDtype(torch.float32, scale=True),
                ]
            )
        return self._transforms[kind]

    def _views(self, images: Tensor, generator: torch.Generator) -> Views:
        b = images.shape[0]
        crops: list[Tensor] = []
        kinds = [0] + [1] * (self.num_global - 1)
        if self.backend == "torchvision":
            for kind in kinds:
                crops.append(
                    _per_image(images, self._torchvision(self.global_size, self.global_scale, kind), generator)
                )
            local = self._torchvision(self.local_size, self.local_scale, 2)
            crops.extend(_per_image(images, local, generator) for _ in range(self.num_local))
        else:
            unit = to_unit_float(images)
            for kind in kinds:
                crops.append(self._batched(unit, self.global_size, self.global_scale, kind, generator))
            if self.num_local:
                repeated = unit.repeat(self.num_local, 1, 1, 1)  # all local crops in one batched call
                locals_ = self._batched(repeated, self.local_size, self.local_scale, 2, generator)
                crops.extend(locals_.split(b))
        return Views(batches=[{"x": c} for c in crops], extras={"num_global": self.num_global})
