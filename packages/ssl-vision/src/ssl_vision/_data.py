"""Image datasets: an ImageFolder tree or torchvision's CIFAR, decoded once into a ``uint8`` tensor.

Small-image SSL spends much of its time decoding and augmenting. The providers here
decode every file once (Pillow) into one ``[N, 3, H, W]`` ``uint8``
tensor in memory (CIFAR-10's 60k images are 184 MB), so training batches are plain
slices and augmentation runs batched in the views. Unreadable files are skipped with a
warning naming each one; grayscale, palette and RGBA files are converted to RGB.

Example:
    >>> # skipped in doctests: reads the shared CIFAR-10 copy, absent outside this workspace
    >>> splits = image_folder("../shared/data/cifar10")  # doctest: +SKIP
    >>> splits.info["image_size"], splits.num_classes  # doctest: +SKIP
    (32, 10)
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import ConfigError, DatasetSplits

__all__ = [
    "ImageDataError",
    "ImageTensorDataset",
    "cifar10",
    "cifar100",
    "collate_images",
    "decode_images",
    "image_folder",
]

DEFAULT_CACHE = Path("~/.cache/ssl-vision")


class ImageDataError(ConfigError):
    """An image dataset could not be read (missing folder, no readable image, a download that failed).

    A :class:`~ssl_core.ConfigError` (so also a ``ValueError``): ``ssl run`` prints its
    one-line message, which says what was tried and which ``--root`` layout works.
    """


_FOLDER_LAYOUT = "an image folder ROOT/train/<class>/*.png + ROOT/test/<class>/*.png (jpg and other formats too)"


def _why(exc: BaseException) -> str:
    """``Type: first line of the message``: enough to tell a network error from a bad archive, on one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class ImageTensorDataset(Dataset[tuple[Tensor, int]]):
    """Decoded images ``[N, 3, H, W]`` (``uint8``) and their labels.

    Example:
        >>> ds = ImageTensorDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
        >>> len(ds), ds[1][1]
        (4, 1)
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str] = ()) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"need one label per image: {images.shape[0]} images, labels {tuple(labels.shape)}")
        self.images, self.labels, self.classes = images, labels.long(), list(classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


def collate_images(samples: Sequence[tuple[Tensor, int]]) -> dict[str, Any]:
    """Stack ``(image, label)`` pairs into ``{"x": uint8 [B, 3, H, W], "y": [B]}``."""
    images, labels = zip(*samples, strict=True)
    return {"x": torch.stack(images), "y": torch.tensor(labels, dtype=torch.long)}


def _first_per_class(labels: Sequence[int], limit: int) -> list[int]:
    """Indices of the first ``limit`` items of each label, in order."""
    seen: Counter[int] = Counter()
    kept = []
    for index, label in enumerate(labels):
        if seen[label] < limit:
            seen[label] += 1
            kept.append(index)
    return kept


def decode_images(
    paths: Sequence[Path], image_size: int | None = None, progress: bool = True
) -> tuple[Tensor, list[int], list[str]]:
    """Decode image files to one ``uint8`` tensor ``[N, 3, S, S]``.

    Files that cannot be decoded are skipped with one warning each (naming the file).
    ``image_size=None`` keeps the images' own size, which must then be square and the
    same for all; otherwise every image is resized (antialiased) to ``image_size``.

    Returns:
        ``(images, indices of the decoded paths, skipped paths with the reason)``.
    """
    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF
    from tqdm.auto import tqdm

    def read(path: Path) -> Tensor | str:
        try:
            with Image.open(path) as file:
                file.load()  # a truncated file fails here ("image file is truncated")
                rgb = np.asarray(file.convert("RGB"))  # grayscale, palette and RGBA become RGB
        except (OSError, ValueError, SyntaxError) as exc:  # what PIL raises for unreadable or broken files
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()

    decoded: list[Tensor] = []
    kept: list[int] = []
    skipped: list[str] = []
    for index, path in enumerate(tqdm(paths, desc="decode", unit="img", disable=not progress, mininterval=1.0)):
        result = read(Path(path))
        if isinstance(result, str):
            warnings.warn(f"skipping unreadable image {path}: {result}", stacklevel=2)
            skipped.append(f"{path}: {result}")
            continue
        decoded.append(result)
        kept.append(index)
    if not decoded:
        return torch.empty(0, 3, image_size or 0, image_size or 0, dtype=torch.uint8), kept, skipped
    sizes = Counter(tuple(img.shape[-2:]) for img in decoded)
    if image_size is None:
        if len(sizes) > 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
            common = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(3))
            raise ImageDataError(
                f"the images are not all square and of one size ({common}); set image_size to resize them"
            )
        return torch.stack(decoded), kept, skipped
    resized = [
        img if tuple(img.shape[-2:]) == (image_size, image_size)
        else TF.resize(img, [image_size, image_size], antialias=True)
        for img in decoded
    ]  # fmt: skip
    return torch.stack(resized), kept, skipped


def _folder_split(
    folder: Path, image_size: int | None, classes: list[str] | None, max_per_class: int | None
) -> tuple[ImageTensorDataset, list[str]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    found, _ = find_classes(str(folder))
    classes = classes or found
    if set(found) - set(classes):
        raise ImageDataError(f"{folder} has classes {sorted(set(found) - set(classes))} that the train split lacks")
    mapping = {name: i for i, name in enumerate(classes)}
    samples = make_dataset(str(folder), {c: mapping[c] for c in found}, extensions=IMG_EXTENSIONS)
    if max_per_class is not None:  # the first files of each class (sorted names), for quick runs
        samples = [samples[i] for i in _first_per_class([label for _, label in samples], max_per_class)]
    images, kept, skipped = decode_images([Path(p) for p, _ in samples], image_size)
    if not kept:
        raise ImageDataError(f"no readable image in {folder} ({len(samples)} files, {len(skipped)} unreadable)")
    labels = torch.tensor([samples[i][1] for i in kept])
    return ImageTensorDataset(images, labels, classes), skipped


def image_folder(
    root: str | None = None,
    image_size: int | None = None,
    train: str = "train",
    test: str = "test",
    max_per_class: int | None = None,
) -> DatasetSplits:
    """Images in ImageFolder layout: ``root/{train,test}/<class>/<image>``, decoded once into memory.

    Args:
        root: the folder holding the ``train`` and ``test`` sub-folders (here
            ``../shared/data/cifar10``).
        image_size: resize every image to this square side; ``None`` keeps the files'
            size (which must then be square and shared by all files).
        train, test: the split folder names.
        max_per_class: keep only the first this-many files of each class in each split.

    Example:
        >>> # skipped in doctests: reads the shared CIFAR-10 copy, absent outside this workspace
        >>> splits = image_folder("../shared/data/cifar10")  # doctest: +SKIP
        >>> len(splits.train), len(splits.test)  # doctest: +SKIP
        (10000, 10000)
    """
    if root is None:
        raise ImageDataError(
            f"vision.image_folder needs root: pass --root ROOT with ROOT/{train}/<class>/*.png + "
            f"ROOT/{test}/<class>/*.png (e.g. --root ../shared/data/cifar10); for CIFAR without a copy, use "
            "vision.cifar10"
        )
    base = Path(root).expanduser()
    for split in (train, test):
        if not (base / split).is_dir():
            raise ImageDataError(
                f"{base / split} is not a folder; --root ROOT must hold ROOT/{train}/<class>/*.png + "
                f"ROOT/{test}/<class>/*.png (jpg and other formats too)"
            )
    train_set, skipped_train = _folder_split(base / train, image_size, None, max_per_class)
    size = int(train_set.images.shape[-1])
    test_set, skipped_test = _folder_split(base / test, image_size or size, train_set.classes, max_per_class)
    info = {
        "image_size": size,
        "channels": 3,
        "classes": train_set.classes,
        "root": str(base),
        "skipped": skipped_train + skipped_test,
    }
    return DatasetSplits(train_set, test_set, collate_images, "image", len(train_set.classes), info)


def _torchvision_cifar(
    name: str, root: str | None, download: bool, image_size: int | None, max_per_class: int | None
) -> DatasetSplits:
    if root is not None and (Path(root).expanduser() / "train").is_dir():  # an ImageFolder copy (../shared/data)
        return image_folder(root, image_size=image_size, max_per_class=max_per_class)
    from torchvision import datasets
    from torchvision.transforms.v2 import functional as TF

    folder = Path(root).expanduser() if root is not None else (DEFAULT_CACHE / name).expanduser()
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        parts = [cls(str(folder), train=split, download=download) for split in (True, False)]
    except Exception as exc:  # offline: URLError; no copy and download = false: RuntimeError; a bad archive: others
        raise ImageDataError(_cifar_unavailable(name, cls, folder, root, download, exc)) from exc
    splits = []
    for part in parts:
        images = torch.from_numpy(part.data).permute(0, 3, 1, 2).contiguous()
        targets = torch.tensor(part.targets)
        if max_per_class is not None:
            keep = torch.tensor(_first_per_class(targets.tolist(), max_per_class), dtype=torch.long)
            images, targets = images[keep], targets[keep]
        if image_size is not None and image_size != images.shape[-1]:
            images = TF.resize(images, [image_size, image_size], antialias=True)
        splits.append(ImageTensorDataset(images, targets, part.classes))
    info = {"image_size": int(splits[0].images.shape[-1]), "channels": 3, "classes": splits[0].classes,
            "root": str(folder), "skipped": []}  # fmt: skip
    return DatasetSplits(splits[0], splits[1], collate_images, "image", len(splits[0].classes), info)


def _cifar_unavailable(name: str, cls: Any, folder: Path, root: str | None, download: bool, exc: BaseException) -> str:
    """One line: what was looked for and where, what was downloaded from, the ``--root`` layouts, ``download``."""
    title = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[name]
    layout = f"pass --root ROOT with ROOT/{cls.base_folder}/ as torchvision writes it, or {_FOLDER_LAYOUT}"
    if not download:
        return (
            f"{title} is not in {folder / cls.base_folder} and could not be downloaded (download = false); "
            f"{layout}; or set download = true to fetch it from {cls.url}"
        )
    where = "ROOT" if root is not None else str(folder)
    return (
        f"{title} is not in {folder / cls.base_folder} and downloading it from {cls.url} failed ({_why(exc)}); "
        f"{layout}; download = true (the default) fetches it into {where} when online"
    )


def cifar10(
    root: str | None = None, download: bool = True, image_size: int | None = None, max_per_class: int | None = None
) -> DatasetSplits:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (downloaded to ``~/.cache/ssl-vision`` when online).

    ``root`` may hold ``cifar-10-batches-py/`` as torchvision writes it, or ``train/`` and
    ``test/`` ImageFolder trees (read with :func:`image_folder`). Without a copy there,
    torchvision downloads the archive (``download = true``, the default) into ``root``, or
    ``~/.cache/ssl-vision/cifar10`` without one; when that fails (offline) the
    :class:`ImageDataError` names the URL, the folder and the layouts ``--root`` accepts.

    Example:
        >>> # skipped in doctests: reads the shared CIFAR-10 copy (or downloads CIFAR-10 without it)
        >>> splits = cifar10("../shared/data/cifar10")  # doctest: +SKIP
        >>> splits.num_classes  # doctest: +SKIP
        10
    """
    return _torchvision_cifar("cifar10", root, download, image_size, max_per_class)


def cifar100(
    root: str | None = None, download: bool = True, image_size: int | None = None, max_per_class: int | None = None
) -> DatasetSplits:
    """CIFAR-100 through ``torchvision.datasets.CIFAR100``; see :func:`cifar10`."""
    return _torchvision_cifar("cifar100", root, download, image_size, max_per_class)
