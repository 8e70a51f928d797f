"""Image corpora as WebDataset tar shards, read by offset: ImageNet-size sets without a million small files.

``ssl vision-shards FOLDER --out DIR`` (:func:`write_shards`) writes an ImageFolder tree
(``FOLDER/{train,test}/<class>/*.jpg``) as WebDataset shards, ``DIR/train-000000.tar``,
... (webdataset's ``ShardWriter``; each sample is ``KEY.jpg`` with the file's own bytes,
not re-encoded, and ``KEY.cls``, the class index), in a seeded random order so every
shard mixes the classes. It then indexes each shard (:func:`index_shard`: tar headers
only) into ``DIR/<shard>.idx.npy`` (``offset, size, label`` of each image) and writes
``DIR/shards.json`` (the shards, their counts and the classes). Shards written by other
tools (``KEY.jpg|png|webp`` + ``KEY.cls``) are indexed in place with
``ssl vision-shards DIR --index-only``.

:func:`sharded_images` (dataset ``vision.shards``) opens such a folder as a map-style
dataset that reads each image by seeking to its offset and decodes it in DataLoader
workers with :func:`~ssl_vision.decode_image`, so it gets everything the training loop
gives map-style datasets: exact mid-epoch resume with workers, rank sharding with each
sample once per epoch, and a corrupt member skipped and named ``SHARD:MEMBER``.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> folder, out = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> for split in ("train", "test"):
    ...     for name in ("cat", "dog"):
    ...         (folder / split / name).mkdir(parents=True)
    ...         Image.new("RGB", (8, 8)).save(folder / split / name / "0.png")
    >>> write_shards(folder, out, progress=False)["splits"]
    {'train': 2, 'test': 2}
    >>> splits = sharded_images(str(out))
    >>> image, label = splits.train[0]
    >>> tuple(image.shape), splits.num_classes
    ((3, 8, 8), 2)
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TypedDict

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import DatasetSplits, SkippedItem

from ._data import ImageDataError, _list_folder, collate_images, decode_image

__all__ = ["ShardedImages", "index_shard", "sharded_images", "write_shards"]

INDEX_FILE: Final = "shards.json"
FORMAT: Final = "ssl-vision-shards/1"
IMAGE_EXTENSIONS: Final = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".tif", ".tiff")
_WRITE_HINT: Final = "write it with `ssl vision-shards IMAGE_FOLDER --out DIR` (or `--index-only DIR` for shards)"


class ShardSummary(TypedDict):
    """What :func:`write_shards` wrote: the format tag, the classes, and per split its shards and counts."""

    format: str
    classes: list[str]
    splits: dict[str, int]
    shards: dict[str, list[dict[str, Any]]]


def _key_and_extension(member: str) -> tuple[str, str]:
    """WebDataset's grouping: the key is the path up to the first dot of the file name."""
    folder, _, name = member.rpartition("/")
    stem, dot, rest = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + rest).lower()


def index_shard(path: str | Path) -> np.ndarray:
    """``int64 [N, 3]``: the data offset, size and label of each image in a WebDataset tar (headers only).

    An image's label is its ``KEY.cls`` member (a decimal integer), or ``-1`` when it has
    none. Samples without an image member are left out.

    Example:
        >>> import tempfile, tarfile
        >>> tar = Path(tempfile.mkdtemp()) / "s.tar"
        >>> with tarfile.open(tar, "w") as t:
        ...     for name, data in (("a.jpg", b"xyz"), ("a.cls", b"3")):
        ...         info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
        >>> index_shard(tar).tolist()
        [[512, 3, 3]]
    """
    images: dict[str, tuple[int, int]] = {}
    labels: dict[str, int] = {}
    order: list[str] = []
    with tarfile.open(path, "r:") as tar:  # plain tar only: offsets into compressed shards cannot be sought
        for member in tar:
            if not member.isfile():
                continue
            key, extension = _key_and_extension(member.name)
            if extension in IMAGE_EXTENSIONS and key not in images:
                images[key] = (member.offset_data, member.size)
                order.append(key)
            elif extension == ".cls":
                handle = tar.extractfile(member)
                text = handle.read().decode(errors="replace").strip() if handle is not None else ""
                labels[key] = int(text) if text.lstrip("-").isdigit() else -1
    rows = [(*images[key], labels.get(key, -1)) for key in order]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _index_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".idx.npy")


def _write_index(folder: Path, classes: Sequence[str], shard_names: dict[str, list[str]]) -> ShardSummary:
    shards: dict[str, list[dict[str, Any]]] = {}
    for split, names in shard_names.items():
        shards[split] = []
        for name in names:
            rows = index_shard(folder / name)
            np.save(_index_path(folder / name), rows)
            shards[split].append({"file": name, "count": len(rows)})
    summary = ShardSummary(
        format=FORMAT,
        classes=list(classes),
        splits={split: sum(s["count"] for s in entries) for split, entries in shards.items()},
        shards=shards,
    )
    (folder / INDEX_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def write_shards(
    folder: str | Path,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train", "test"),
    max_count: int = 10_000,
    max_size: float = 1e9,
    seed: int = 0,
    progress: bool = True,
) -> ShardSummary:
    """Write an ImageFolder tree as WebDataset shards plus their index (``shards.json``, ``*.idx.npy``).

    Args:
        folder: holds ``<split>/<class>/<image>`` for each of ``splits``.
        out: the folder to write (created).
        max_count, max_size: a new shard starts after this many samples or bytes.
        seed: the shuffle of the samples before writing (so shards mix classes).
    """
    try:
        import webdataset as wds
    except ImportError as exc:  # an extra: pip install 'ssl-vision[shards]'
        raise ImageDataError(
            "writing shards needs webdataset: pip install 'ssl-vision[shards]' (reading them does not)"
        ) from exc
    from tqdm.auto import tqdm

    base, target = Path(folder).expanduser(), Path(out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    classes: list[str] | None = None
    names: dict[str, list[str]] = {}
    for split in splits:
        if not (base / split).is_dir():
            raise ImageDataError(f"{base / split} is not a folder; FOLDER must hold {split}/<class>/<image>")
        samples, classes = _list_folder(base / split, classes, None)
        if not samples:
            raise ImageDataError(f"no image file in {base / split} (expected {base / split}/<class>/*.jpg)")
        random.Random(f"{seed}-{split}").shuffle(samples)
        pattern = str(target / f"{split}-%06d.tar")
        with wds.ShardWriter(pattern, maxcount=max_count, maxsize=max_size, verbose=0) as sink:
            for number, (path, label) in enumerate(tqdm(samples, desc=f"shards {split}", disable=not progress)):
                extension = Path(path).suffix.lower().lstrip(".") or "jpg"
                sink.write({"__key__": f"{number:09d}", extension: Path(path).read_bytes(), "cls": label})
            written = sink.shard  # shards 0 .. written - 1
        names[split] = [Path(pattern % number).name for number in range(written)]
    return _write_index(target, classes or [], names)


def index_existing_shards(folder: str | Path, *, splits: Sequence[str] = ("train", "test")) -> ShardSummary:
    """Index WebDataset shards written elsewhere (``<split>-*.tar`` with ``KEY.cls`` labels) in place."""
    base = Path(folder).expanduser()
    names = {split: sorted(p.name for p in base.glob(f"{split}-*.tar")) for split in splits}
    for split, found in names.items():
        if not found:
            raise ImageDataError(f"no shard {base}/{split}-*.tar to index")
    labels = {int(row[2]) for split in names for name in names[split][:1] for row in index_shard(base / name)}
    classes = [str(i) for i in range(max(labels, default=-1) + 1)]
    return _write_index(base, classes, names)


class ShardedImages(Dataset[Any]):
    """Images inside tar shards, read by offset and decoded on access: ``(uint8 [3, S, S], label)``.

    Holds the shard names and one ``int64`` index row per image (24 bytes; ImageNet's
    1.28 M images are 31 MB); each DataLoader worker keeps its own open file per shard. A
    member that does not decode is a :class:`~ssl_core.SkippedItem` named ``SHARD:MEMBER``.

    Example:
        >>> ds = ShardedImages("/nowhere", ["a.tar"], np.array([[512, 3, 0]]), image_size=8, classes=["x"])
        >>> len(ds), ds.decodes_lazily, ds.labels.tolist()
        (1, True, [0])
    """

    decodes_lazily = True

    def __init__(
        self, root: str | Path, shards: Sequence[str], rows: np.ndarray, image_size: int, classes: Sequence[str],
        shard_of_row: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.root, self.image_size, self.classes = Path(root), int(image_size), list(classes)
        self._shards = list(shards)
        self._rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, 3)
        self._shard_of_row = (
            np.zeros(len(self._rows), dtype=np.int32) if shard_of_row is None else np.asarray(shard_of_row, np.int32)
        )
        self.labels = torch.from_numpy(self._rows[:, 2].copy())
        self._files: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __del__(self) -> None:
        for file in self._files.values():
            file.close()

    def __getstate__(self) -> dict[str, Any]:  # open files stay in the process that opened them
        return {**self.__dict__, "_files": {}}

    def _member_name(self, shard: Path, offset: int) -> str:
        """The member's name, from the tar header just before its data (only read to name a bad member)."""
        try:
            with shard.open("rb") as file:
                file.seek(offset - tarfile.BLOCKSIZE)
                return tarfile.TarInfo.frombuf(file.read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape").name
        except (OSError, tarfile.TarError):
            return f"offset {offset}"

    def __getitem__(self, index: int) -> tuple[Tensor, int] | SkippedItem:
        offset, size, label = (int(v) for v in self._rows[index])
        number = int(self._shard_of_row[index])
        shard = self.root / self._shards[number]
        try:
            file = self._files.get(number)
            if file is None:
                file = self._files[number] = shard.open("rb")
            file.seek(offset)
            data = file.read(size)
            if len(data) != size:
                raise OSError(f"the shard ends {size - len(data)} bytes early")
        except OSError as exc:
            return SkippedItem(f"{shard}:{self._member_name(shard, offset)}", str(exc))
        image = decode_image(io.BytesIO(data), self.image_size)
        if isinstance(image, str):
            return SkippedItem(f"{shard}:{self._member_name(shard, offset)}", image)
        return image, label

    def set_epoch(self, epoch: int) -> None:
        """Nothing per epoch: every item decodes to the same tensor (augmentation runs in the views)."""


def _open_split(base: Path, split: str, summary: dict[str, Any], image_size: int | None) -> ShardedImages:
    entries = summary.get("shards", {}).get(split)
    if not entries:
        known = sorted(summary.get("shards", {}))
        hint = f"it has {', '.join(known)}: set data.train / data.test to one of them" if known else _WRITE_HINT
        raise ImageDataError(f"{base / INDEX_FILE} lists no {split!r} shards; {hint}")
    parts, owners = [], []
    for number, entry in enumerate(entries):
        index = _index_path(base / entry["file"])
        if not index.is_file():
            raise ImageDataError(f"{index} is missing; {_WRITE_HINT}")
        rows = np.load(index)
        if len(rows) != entry["count"]:
            raise ImageDataError(
                f"{index} has {len(rows)} images but {INDEX_FILE} records {entry['count']} for {entry['file']}; "
                f"{_WRITE_HINT}"
            )
        parts.append(rows)
        owners.append(np.full(len(rows), number, dtype=np.int32))
    rows = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    names = [entry["file"] for entry in entries]
    side = image_size if image_size is not None else _first_side(base, names, rows, np.concatenate(owners))
    return ShardedImages(base, names, rows, side, summary.get("classes", []), np.concatenate(owners))


def _first_side(base: Path, names: list[str], rows: np.ndarray, owners: np.ndarray) -> int:
    """The side of the first image (of the first 100) that decodes: the size when ``image_size`` is unset."""
    from PIL import Image

    for (offset, size, _), number in zip(rows[:100], owners[:100], strict=True):
        with (base / names[int(number)]).open("rb") as file:
            file.seek(int(offset))
            data = file.read(int(size))
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except (OSError, ValueError, SyntaxError):
            continue
        if width != height:
            raise ImageDataError(f"the images in {base} are {width}x{height}, not square; set image_size")
        return int(width)
    raise ImageDataError(f"none of the first {min(len(rows), 100)} images in the shards of {base} decodes")


def sharded_images(
    root: str | None = None,
    image_size: int | None = None,
    train: str = "train",
    test: str = "test",
) -> DatasetSplits:
    """Images in WebDataset tar shards with an ``ssl vision-shards`` index, decoded in DataLoader workers.

    Args:
        root: the shard folder (``shards.json``, ``<split>-NNNNNN.tar`` and their ``.idx.npy``).
        image_size: resize every image to this square side; ``None`` keeps the first
            image's side (others are resized to it).
        train, test: the split names in ``shards.json``.
    """
    if root is None:
        raise ImageDataError(f"vision.shards needs root: pass --root DIR, a folder of shards; {_WRITE_HINT}")
    base = Path(root).expanduser()
    if not (base / INDEX_FILE).is_file():
        raise ImageDataError(f"{base / INDEX_FILE} is missing; {_WRITE_HINT}")
    summary = json.loads((base / INDEX_FILE).read_text())
    train_set = _open_split(base, train, summary, image_size)
    test_set = _open_split(base, test, summary, image_size or train_set.image_size)
    classes = train_set.classes or [str(i) for i in range(int(train_set.labels.max()) + 1)]
    info = {"image_size": train_set.image_size, "channels": 3, "classes": classes, "root": str(base), "stream": True}
    return DatasetSplits(train_set, test_set, collate_images, "image", len(classes), info)
