"""Batched augmentation matches torchvision's per-image transforms and draws per-image parameters."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ssl_vision import _augment as aug


def images(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_full_crop_without_flip_is_the_identity() -> None:
    x = images()
    out = aug.random_resized_crop(x, 16, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(out, x, atol=1e-5)


def test_full_crop_with_flip_mirrors_every_image() -> None:
    x = images()
    out = aug.random_resized_crop(x, 16, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_crops_differ_per_image_and_repeat_per_seed() -> None:
    x = images(1).repeat(8, 1, 1, 1)  # the same image eight times
    a = aug.random_resized_crop(x, 8, gen(1), scale=(0.1, 0.5))
    b = aug.random_resized_crop(x, 8, gen(1), scale=(0.1, 0.5))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1]), "each image must draw its own crop"


def test_small_crop_is_a_region_of_the_image() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[..., :16, :] = 1.0  # top half white
    out = aug.random_resized_crop(x, 16, gen(3), scale=(0.01, 0.02), ratio=(1.0, 1.0), flip_p=0.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert float(out.std()) < 0.5  # a 3-5 px crop is mostly one colour


@pytest.mark.parametrize("factor", [-0.25, 0.1, 0.4])
def test_hue_shift_matches_torchvision(factor: float) -> None:
    x = images(3)
    ours = aug._adjust_hue(x, torch.full((3,), factor))
    expected = torch.stack([TF.adjust_hue(img, factor) for img in x])
    assert torch.allclose(ours, expected, atol=1e-4)


def test_saturation_and_contrast_formulas_match_torchvision() -> None:
    x = images(2)
    f = torch.tensor([0.5, 1.5])
    saturation = aug._blend(x, aug.rgb_to_gray(x), f)
    contrast = aug._blend(x, aug.rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True), f)
    for i in range(2):
        assert torch.allclose(saturation[i], TF.adjust_saturation(x[i], float(f[i])), atol=1e-5)
        assert torch.allclose(contrast[i], TF.adjust_contrast(x[i], float(f[i])), atol=1e-5)


def test_color_jitter_probability_zero_is_a_no_op_and_one_changes_every_image() -> None:
    x = images()
    assert torch.equal(aug.color_jitter(x, gen(), p=0.0), x)
    out = aug.color_jitter(x, gen(), p=1.0)
    assert ((out - x).abs().flatten(1).amax(1) > 1e-3).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_blur_matches_torchvision_for_the_drawn_sigma() -> None:
    x = images(4, size=16)
    g = gen(5)
    out = aug.gaussian_blur(x, g, p=1.0, sigma=(0.5, 1.5), kernel_size=7)
    g = gen(5)
    torch.rand(4, generator=g)  # the apply draw
    sigmas = torch.rand(4, generator=g) * 1.0 + 0.5
    for i in range(4):
        expected = TF.gaussian_blur(x[i], [7, 7], [float(sigmas[i])] * 2)
        assert torch.allclose(out[i], expected, atol=1e-4)


def test_grayscale_and_solarize_at_probability_one() -> None:
    x = images()
    gray = aug.grayscale(x, gen(), p=1.0)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    assert torch.allclose(aug.solarize(x, gen(), p=1.0), TF.solarize(x, 0.5))


def test_runs_on_bf16_free_float32_inputs_under_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aug.gaussian_blur(images(), gen(), p=1.0)
    assert out.dtype == torch.float32
