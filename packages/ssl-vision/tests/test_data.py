"""Image datasets: decoding once into uint8, conversions, bad files skipped by name, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ssl_core.testing import DatasetConformance
from ssl_vision import ImageDataError, cifar10, collate_images, image_folder


def test_folder_decodes_and_converts_gray_and_rgba(image_tree: Path) -> None:
    splits = image_folder(str(image_tree))
    assert len(splits.train) == 12 and len(splits.test) == 6
    assert splits.num_classes == 2 and splits.info["classes"] == ["cat", "dog"]
    assert splits.info["image_size"] == 32 and splits.info["skipped"] == []
    image, label = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == 0
    batch = collate_images([splits.train[i] for i in range(4)])
    assert batch["x"].shape == (4, 3, 32, 32) and batch["y"].dtype == torch.long


def test_unreadable_and_truncated_files_are_skipped_with_a_warning_naming_them(image_tree: Path) -> None:
    good = (image_tree / "train" / "cat" / "0.jpg").read_bytes()
    (image_tree / "train" / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (image_tree / "train" / "dog" / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*(truncated|junk)\.jpg"):
        splits = image_folder(str(image_tree))
    assert len(splits.train) == 12
    assert sorted(Path(s.split(":")[0]).name for s in splits.info["skipped"]) == ["junk.jpg", "truncated.jpg"]


def test_mixed_sizes_need_image_size_and_are_resized(image_tree: Path, make_image: Callable[..., Path]) -> None:
    make_image(image_tree / "train" / "cat" / "big.png", size=(48, 40))
    with pytest.raises(ImageDataError, match="set image_size"):
        image_folder(str(image_tree))
    splits = image_folder(str(image_tree), image_size=24)
    assert splits.train[0][0].shape == (3, 24, 24) and splits.info["image_size"] == 24


def test_missing_folders_and_empty_splits_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageDataError, match="needs root"):
        image_folder(None)
    with pytest.raises(ImageDataError, match="is not a folder"):
        image_folder(str(tmp_path))
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.jpg").write_bytes(b"broken")
    with pytest.warns(UserWarning), pytest.raises(ImageDataError, match="no readable image"):
        image_folder(str(tmp_path))


def test_max_per_class_keeps_the_first_files(image_tree: Path) -> None:
    splits = image_folder(str(image_tree), max_per_class=2)
    assert len(splits.train) == 4 and splits.train.labels.tolist() == [0, 0, 1, 1]


def test_cifar10_reads_an_imagefolder_copy_and_explains_a_missing_download(image_tree: Path, tmp_path: Path) -> None:
    assert len(cifar10(str(image_tree)).train) == 12
    with pytest.raises(ImageDataError, match="could not be downloaded"):
        cifar10(str(tmp_path / "nothing"), download=False)


class TestImageFolderConformance(DatasetConformance):
    def make_provider(self):  # type: ignore[no-untyped-def]
        return image_folder

    @pytest.fixture(autouse=True)
    def _root(self, image_tree: Path) -> None:
        self.root = str(image_tree)


def test_shared_cifar_subset_has_ten_classes(cifar_root: Path) -> None:
    splits = cifar10(str(cifar_root), max_per_class=3)
    assert len(splits.train) == 30 and len(splits.test) == 30 and splits.num_classes == 10
    assert splits.train.images.shape[1:] == (3, 32, 32)


def _fake_cifar_archive(folder: Path, per_batch: int = 4) -> tuple[Path, dict[str, str]]:
    """A cifar-10-python.tar.gz in torchvision's layout (5 train batches, 1 test batch, meta), with md5s."""
    import hashlib
    import pickle
    import tarfile

    import numpy as np

    rng = np.random.default_rng(0)
    inner = folder / "build" / "cifar-10-batches-py"
    inner.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(per_batch)],
        }
        (inner / name).write_bytes(pickle.dumps(batch))
    (inner / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname="cifar-10-batches-py")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in [*inner.iterdir(), archive]}
    return archive, md5


def test_cifar10_downloads_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real download path (torchvision over HTTP), served from a local archive since the network is unavailable."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from torchvision.datasets import CIFAR10

    archive, md5 = _fake_cifar_archive(tmp_path / "server")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.server_port}/{archive.name}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5[archive.name])
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    try:
        splits = cifar10(str(tmp_path / "cache"))
    finally:
        server.shutdown()
        server.server_close()
    assert len(splits.train) == 20 and len(splits.test) == 4 and splits.num_classes == 10
    assert splits.train[0][0].shape == (3, 32, 32) and splits.info["image_size"] == 32
    assert len(cifar10(str(tmp_path / "cache"), download=False, max_per_class=1).train) == 4  # labels 0-3 occur
