"""Image datasets: an ImageFolder tree or torchvision's CIFAR, decoded once into a ``uint8`` tensor, or streamed.

Small-image SSL spends much of its time decoding and augmenting. The providers here
decode every file once (Pillow) into one ``[N, 3, H, W]`` ``uint8``
tensor in memory (CIFAR-10's 60k images are 184 MB), so training batches are plain
slices and augmentation runs batched in the views. Unreadable files are skipped with a
warning naming each one; grayscale, palette and RGBA files are converted to RGB.

Folders too large for memory (ImageNet) are streamed instead (``stream=True``): the
dataset lists the files and decodes each one in ``__getitem__``, in DataLoader workers,
with the same function (:func:`decode_image`) and so the same tensors; an unreadable file
becomes a :class:`ssl_core.SkippedItem` that the training loop names and counts.

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
from typing import Any, BinaryIO

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import ConfigError, DatasetSplits, SkippedItem

__all__ = [
    "ImageDataError",
    "ImageTensorDataset",
    "StreamedImageFolder",
    "cifar10",
    "cifar100",
    "collate_images",
    "decode_image",
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


def decode_image(path: str | Path | BinaryIO, image_size: int | None = None) -> Tensor | str:
    """One image file as ``uint8`` ``[3, H, W]`` RGB, resized (antialiased) to ``image_size`` square when given.

    Grayscale, palette and RGBA files become RGB; an image already ``image_size`` square
    is returned as decoded. The one decode the in-memory, streamed and sharded datasets
    use; ``path`` may be an open binary file (a member read out of a tar shard).

    Returns:
        The tensor, or for a file that cannot be decoded, why (one line).

    Example:
        >>> decode_image("no/such/file.jpg")[:26]
        '[Errno 2] No such file or '
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as file:
            file.load()  # a truncated file fails here ("image file is truncated")
            rgb = np.asarray(file.convert("RGB"))  # grayscale, palette and RGBA become RGB
    except (OSError, ValueError, SyntaxError) as exc:  # what PIL raises for unreadable or broken files
        text = str(exc).strip().replace(repr(path), "").strip()  # PIL names an open file by its repr
        return text.splitlines()[0] if text else type(exc).__name__
    image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
    if image_size is None or tuple(image.shape[-2:]) == (image_size, image_size):
        return image
    from torchvision.transforms.v2 import functional as TF

    resized: Tensor = TF.resize(image, [image_size, image_size], antialias=True)
    return resized


def decode_images(
    paths: Sequence[Path], image_size: int | None = None, progress: bool = True
) -> tuple[Tensor, list[int], list[str]]:
    """Decode image files to one ``uint8`` tensor ``[N, 3, S, S]`` (each with :func:`decode_image`).

    Files that cannot be decoded are skipped with one warning each (naming the file).
    ``image_size=None`` keeps the images' own size, which must then be square and the
    same for all; otherwise every image is resized (antialiased) to ``image_size``.

    Returns:
        ``(images, indices of the decoded paths, skipped paths with the reason)``.
    """
    from tqdm.auto import tqdm

    decoded: list[Tensor] = []
    kept: list[int] = []
    skipped: list[str] = []
    for index, path in enumerate(tqdm(paths, desc="decode", unit="img", disable=not progress, mininterval=1.0)):
        result = decode_image(path, image_size)
        if isinstance(result, str):
            warnings.warn(f"skipping unreadable image {path}: {result}", stacklevel=2)
            skipped.append(f"{path}: {result}")
            continue
        decoded.append(result)
        kept.append(index)
    if not decoded:
        return torch.empty(0, 3, image_size or 0, image_size or 0, dtype=torch.uint8), kept, skipped
    if image_size is None:
        sizes = Counter(tuple(img.shape[-2:]) for img in decoded)
        if len(sizes) > 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
            common = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(3))
            raise ImageDataError(
                f"the images are not all square and of one size ({common}); set image_size to resize them"
            )
    return torch.stack(decoded), kept, skipped


class StreamedImageFolder(Dataset[Any]):
    """Image files decoded on access: ``(uint8 [3, S, S], label)``, or a :class:`~ssl_core.SkippedItem`.

    Holds only the file list (as one array of relative paths, so DataLoader workers do not
    copy a million Python strings) and decodes with :func:`decode_image`, so an item
    equals the in-memory dataset's. Declares ``decodes_lazily`` (the training loop gives
    it workers). Decoding is deterministic, so ``set_epoch`` has nothing to change.

    Example:
        >>> ds = StreamedImageFolder("/nowhere", ["a/1.jpg"], [0], image_size=8, classes=["a"])
        >>> len(ds), ds.decodes_lazily, type(ds[0]).__name__, ds[0].name
        (1, True, 'SkippedItem', '/nowhere/a/1.jpg')
    """

    decodes_lazily = True

    def __init__(
        self, root: str | Path, files: Sequence[str], labels: Sequence[int], image_size: int, classes: Sequence[str]
    ) -> None:
        import numpy as np

        if len(files) != len(labels):
            raise ValueError(f"need one label per file: {len(files)} files, {len(labels)} labels")
        self.root, self.image_size, self.classes = Path(root), int(image_size), list(classes)
        self._files = np.array([name.encode() for name in files], dtype=np.bytes_)
        self.labels = torch.tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self._files)

    def path(self, index: int) -> Path:
        """The file behind item ``index``."""
        return self.root / bytes(self._files[index]).decode()

    def __getitem__(self, index: int) -> tuple[Tensor, int] | SkippedItem:
        path = self.path(index)
        image = decode_image(path, self.image_size)
        if isinstance(image, str):
            return SkippedItem(str(path), image)
        return image, int(self.labels[index])

    def set_epoch(self, epoch: int) -> None:
        """Nothing per epoch: every item decodes to the same tensor (augmentation runs in the views)."""


def _list_folder(
    folder: Path, classes: list[str] | None, max_per_class: int | None
) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, label)`` of every image file (torchvision's ImageFolder scan, nothing decoded), and the classes."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    found, _ = find_classes(str(folder))
    classes = classes or found
    if set(found) - set(classes):
        raise ImageDataError(f"{folder} has classes {sorted(set(found) - set(classes))} that the train split lacks")
    mapping = {name: i for i, name in enumerate(classes)}
    samples = make_dataset(str(folder), {c: mapping[c] for c in found}, extensions=IMG_EXTENSIONS)
    if max_per_class is not None:  # the first files of each class (sorted names), for quick runs
        samples = [samples[i] for i in _first_per_class([label for _, label in samples], max_per_class)]
    return samples, classes


def _first_side(folder: Path, samples: Sequence[tuple[str, int]]) -> int:
    """The side of the first readable image (header only): the streamed size when ``image_size`` is unset."""
    from PIL import Image

    for path, _ in samples[:100]:
        try:
            with Image.open(path) as file:
                width, height = file.size
        except (OSError, ValueError, SyntaxError):
            continue
        if width != height:
            raise ImageDataError(
                f"{path} is {width}x{height}, not square; set image_size to stream {folder} resized to a square"
            )
        return int(width)
    raise ImageDataError(f"none of the first {min(len(samples), 100)} files in {folder} is a readable image")


def _streamed_split(
    folder: Path, image_size: int | None, classes: list[str] | None, max_per_class: int | None
) -> StreamedImageFolder:
    samples, classes = _list_folder(folder, classes, max_per_class)
    if not samples:
        raise ImageDataError(f"no image file in {folder} (expected {folder}/<class>/*.jpg)")
    size = image_size if image_size is not None else _first_side(folder, samples)
    files = [str(Path(path).relative_to(folder)) for path, _ in samples]
    return StreamedImageFolder(folder, files, [label for _, label in samples], size, classes)


def _folder_split(
    folder: Path, image_size: int | None, classes: list[str] | None, max_per_class: int | None
) -> tuple[ImageTensorDataset, list[str]]:
    samples, classes = _list_folder(folder, classes, max_per_class)
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
    stream: bool = False,
) -> DatasetSplits:
    """Images in ImageFolder layout: ``root/{train,test}/<class>/<image>``, decoded once into memory or streamed.

    Args:
        root: the folder holding the ``train`` and ``test`` sub-folders (here
            ``../shared/data/cifar10``).
        image_size: resize every image to this square side; ``None`` keeps the files'
            size (which must then be square and shared by all files; streamed, the
            first file's side, to which any other size is resized).
        train, test: the split folder names.
        max_per_class: keep only the first this-many files of each class in each split.
        stream: list the files only and decode each in ``__getitem__`` (in DataLoader
            workers, :class:`StreamedImageFolder`): for folders that do not fit in
            memory (ImageNet). Same tensors as in memory; an unreadable file is skipped
            during training and counted in ``metrics.json`` (``data.skipped_in_training``).

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
    train_set: ImageTensorDataset | StreamedImageFolder
    test_set: ImageTensorDataset | StreamedImageFolder
    if stream:
        train_set = _streamed_split(base / train, image_size, None, max_per_class)
        size, skipped = train_set.image_size, []
        test_set = _streamed_split(base / test, size, train_set.classes, max_per_class)
    else:
        train_set, skipped_train = _folder_split(base / train, image_size, None, max_per_class)
        size = int(train_set.images.shape[-1])
        test_set, skipped_test = _folder_split(base / test, image_size or size, train_set.classes, max_per_class)
        skipped = skipped_train + skipped_test
    info = {
        "image_size": size,
        "channels": 3,
        "classes": train_set.classes,
        "root": str(base),
        "skipped": skipped,
        "stream": stream,
    }
    return DatasetSplits(train_set, test_set, collate_images, "image", len(train_set.classes), info)


def _torchvision_cifar(
    name: str, root: str | None, download: bool, image_size: int | None, max_per_class: int | None, stream: bool
) -> DatasetSplits:
    if root is not None and (Path(root).expanduser() / "train").is_dir():  # an ImageFolder copy (../shared/data)
        return image_folder(root, image_size=image_size, max_per_class=max_per_class, stream=stream)
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
    root: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    max_per_class: int | None = None,
    stream: bool = False,
) -> DatasetSplits:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (downloaded to ``~/.cache/ssl-vision`` when online).

    ``root`` may hold ``cifar-10-batches-py/`` as torchvision writes it, or ``train/`` and
    ``test/`` ImageFolder trees (read with :func:`image_folder`). Without a copy there,
    torchvision downloads the archive (``download = true``, the default) into ``root``, or
    ``~/.cache/ssl-vision/cifar10`` without one; when that fails (offline) the
    :class:`ImageDataError` names the URL, the folder and the layouts ``--root`` accepts.
    ``stream`` applies to an ImageFolder ``root`` only (torchvision's batches are one
    array, always in memory).

    Example:
        >>> # skipped in doctests: reads the shared CIFAR-10 copy (or downloads CIFAR-10 without it)
        >>> splits = cifar10("../shared/data/cifar10")  # doctest: +SKIP
        >>> splits.num_classes  # doctest: +SKIP
        10
    """
    return _torchvision_cifar("cifar10", root, download, image_size, max_per_class, stream)


def cifar100(
    root: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    max_per_class: int | None = None,
    stream: bool = False,
) -> DatasetSplits:
    """CIFAR-100 through ``torchvision.datasets.CIFAR100``; see :func:`cifar10`."""
    return _torchvision_cifar("cifar100", root, download, image_size, max_per_class, stream)
