"""Shared fixtures: one torch thread (the CI machine is shared), the local CIFAR-10 copy, small image trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CIFAR_ROOT = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "cifar10"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    root = CIFAR_ROOT.resolve()
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.skip(f"the CIFAR-10 ImageFolder copy is not at {root} (the shared data folder is absent)")
    return root


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """A random image file in ``mode`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    """:func:`write_image`, for tests that add files to a tree."""
    return write_image


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """``train/`` and ``test/`` with two classes of 6 and 3 images each (JPEG and PNG, RGB/gray/RGBA)."""
    for split, count in (("train", 6), ("test", 3)):
        for label, name in enumerate(("cat", "dog")):
            for i in range(count):
                mode = ("RGB", "L", "RGBA")[i % 3]
                suffix = ".jpg" if mode != "RGBA" else ".png"
                write_image(tmp_path / split / name / f"{i}{suffix}", mode, seed=100 * label + i)
    return tmp_path
