"""Batched image augmentation on the device: one call transforms a whole batch, each image drawn apart.

torchvision's v2 transforms draw one set of parameters per call, so multi-crop pipelines
run them image by image (in DataLoader workers). These functions draw per-image
parameters from a ``torch.Generator`` and apply them with a handful of batched tensor
ops (``grid_sample`` for every crop, grouped convolution for every blur), which is what
makes DINO's eight crops per image cheap on two CPU cores and free on a GPU. The
parameter ranges and formulas follow torchvision's ``RandomResizedCrop``,
``ColorJitter``, ``RandomGrayscale``, ``GaussianBlur`` and ``RandomSolarize``.

Images are float ``[B, 3, H, W]`` in ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "color_jitter",
    "gaussian_blur",
    "grayscale",
    "random_resized_crop",
    "rgb_to_gray",
    "solarize",
]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _chance(n: int, p: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def random_resized_crop(
    images: Tensor,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> Tensor:
    """Crop a random area and aspect ratio of each image, resize it to ``size`` x ``size``, maybe flip.

    The box is drawn as torchvision's ``RandomResizedCrop`` draws it (ten tries, then the
    whole image); all crops are resampled by one bilinear ``grid_sample``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_resized_crop(torch.rand(4, 3, 32, 32), 16, g).shape
        torch.Size([4, 3, 16, 16])
    """
    b, _, height, width = images.shape
    device = images.device
    tries = 10
    area = height * width * _uniform(b * tries, *scale, generator, device).view(b, tries)
    log_ratio = _uniform(b * tries, math.log(ratio[0]), math.log(ratio[1]), generator, device).view(b, tries)
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().round()
    h = (area / aspect).sqrt().round()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.float().argmax(1, keepdim=True)  # the first valid try (0 when none is valid)
    any_valid = valid.any(1)
    w = torch.where(any_valid, w.gather(1, first).squeeze(1), torch.full_like(w[:, 0], width))
    h = torch.where(any_valid, h.gather(1, first).squeeze(1), torch.full_like(h[:, 0], height))
    top = (torch.rand(b, generator=generator, device=device) * (height - h + 1)).floor()
    left = (torch.rand(b, generator=generator, device=device) * (width - w + 1)).floor()
    flip = torch.where(_chance(b, flip_p, generator, device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = w / width * flip
    theta[:, 0, 2] = (left + w / 2) / width * 2 - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (top + h / 2) / height * 2 - 1
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rgb_to_gray(images: Tensor) -> Tensor:
    """ITU-R 601 luma, ``[B, 1, H, W]`` (torchvision's ``rgb_to_grayscale``)."""
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (factor.view(-1, 1, 1, 1) * images + (1 - factor.view(-1, 1, 1, 1)) * other).clamp_(0.0, 1.0)


def _rgb_to_hsv(images: Tensor) -> Tensor:
    r, g, b = images.unbind(1)
    maxc, _ = images.max(1)
    minc, _ = images.min(1)
    flat = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(flat, ones, maxc)
    divisor = torch.where(flat, ones, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long() % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    choices = torch.stack(
        (
            torch.stack((v, q, p, p, t, v), dim=1),
            torch.stack((t, v, v, q, p, p), dim=1),
            torch.stack((p, p, t, v, v, q), dim=1),
        ),
        dim=1,
    )  # [B, 3, 6, H, W]
    index = sector.unsqueeze(1).unsqueeze(1).expand(-1, 3, 1, -1, -1)
    return choices.gather(2, index).squeeze(2)


def _adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    hsv = _rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1))


def color_jitter(
    images: Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    p: float = 0.8,
) -> Tensor:
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)``, with per-image factors.

    The four adjustments run in one random order per batch (torchvision draws one per
    image); each image draws its own factors and whether it is jittered at all.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> color_jitter(torch.rand(4, 3, 8, 8), g).shape
        torch.Size([4, 3, 8, 8])
    """
    b, device = images.shape[0], images.device
    apply = _chance(b, p, generator, device)
    if not bool(apply.any()):
        return images
    chosen = images[apply]
    n = chosen.shape[0]
    factors = {
        0: _uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator, device),
        1: _uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator, device),
        2: _uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator, device),
        3: _uniform(n, -hue, hue, generator, device),
    }
    order = torch.randperm(4, generator=generator, device=device).tolist()
    for op in order:
        if op == 0 and brightness > 0:
            chosen = (chosen * factors[0].view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
        elif op == 1 and contrast > 0:
            mean = rgb_to_gray(chosen).mean(dim=(1, 2, 3), keepdim=True)
            chosen = _blend(chosen, mean, factors[1])
        elif op == 2 and saturation > 0:
            chosen = _blend(chosen, rgb_to_gray(chosen), factors[2])
        elif op == 3 and hue > 0:
            chosen = _adjust_hue(chosen, factors[3])
    out = images.clone()
    out[apply] = chosen
    return out


def grayscale(images: Tensor, generator: torch.Generator, p: float = 0.2) -> Tensor:
    """torchvision's ``RandomGrayscale(p)`` per image (three equal channels)."""
    pick = _chance(images.shape[0], p, generator, images.device).view(-1, 1, 1, 1)
    return torch.where(pick, rgb_to_gray(images).expand_as(images), images)


def gaussian_blur(
    images: Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_size: int | None = None,
) -> Tensor:
    """torchvision's ``RandomApply([GaussianBlur(k, sigma)], p)``; each image draws its own sigma.

    ``kernel_size=None`` uses the odd size covering +/- 3 sigma of the largest sigma, capped
    at the image side. The blur is separable and runs as one grouped convolution per axis.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> gaussian_blur(torch.rand(4, 3, 16, 16), g, p=1.0).shape
        torch.Size([4, 3, 16, 16])
    """
    b, c, height, width = images.shape
    device = images.device
    apply = _chance(b, p, generator, device)
    sigmas = _uniform(b, *sigma, generator, device)
    if not bool(apply.any()):
        return images
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma[1]) + 1
    kernel_size = min(kernel_size, 2 * ((min(height, width) - 1) // 2) + 1)
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    chosen = images[apply]
    n = chosen.shape[0]
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, device=device)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigmas[apply].view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(images.dtype)
    kernel = kernel.repeat_interleave(c, dim=0)  # [n * c, k]
    pad = kernel_size // 2
    x = chosen.reshape(1, n * c, height, width)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    out = images.clone()
    out[apply] = x.view(n, c, height, width).to(out.dtype)  # autocast may have run the convolutions in bf16
    return out


def solarize(images: Tensor, generator: torch.Generator, p: float = 0.2, threshold: float = 0.5) -> Tensor:
    """torchvision's ``RandomSolarize(threshold, p)`` per image: invert the pixels at or above ``threshold``."""
    pick = _chance(images.shape[0], p, generator, images.device).view(-1, 1, 1, 1)
    return torch.where(pick & (images >= threshold), 1.0 - images, images)
