"""Datasets: every UCR/UEA problem by name through aeon, and numpy/CSV arrays from a path.

Series are stored as ``[N, T, C]`` float32 with NaN after the end of shorter series;
batches are ``{"x": [B, T, C], "y": [B], "padding_mask": [B, T], "index": [B]}``
(``padding_mask`` is ``True`` on steps that held a NaN, which are zero in ``x``;
``index`` is the sample's row in its split, so errors can name it).

Example:
    >>> splits = ucr(dataset="GunPoint")
    >>> len(splits.train), splits.info["in_channels"], splits.num_classes
    (50, 1, 2)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import ConfigError, DatasetSplits

__all__ = [
    "MemmapSeriesDataset",
    "SeriesDataError",
    "SeriesDataset",
    "arrays",
    "collate_series",
    "known_datasets",
    "memmap",
    "ts2vec_normalize",
    "ucr",
]

Normalize = Literal["ts2vec", "dataset", "channel", "none"]

# UCR problems that the archive does not z-normalise per series; TS2Vec normalises them over the whole train set.
_UCR_UNNORMALISED = frozenset(
    [
        "AllGestureWiimoteX",
        "AllGestureWiimoteY",
        "AllGestureWiimoteZ",
        "BME",
        "Chinatown",
        "Crop",
        "EOGHorizontalSignal",
        "EOGVerticalSignal",
        "Fungi",
        "GestureMidAirD1",
        "GestureMidAirD2",
        "GestureMidAirD3",
        "GesturePebbleZ1",
        "GesturePebbleZ2",
        "GunPointAgeSpan",
        "GunPointMaleVersusFemale",
        "GunPointOldVersusYoung",
        "HouseTwenty",
        "InsectEPGRegularTrain",
        "InsectEPGSmallTrain",
        "MelbournePedestrian",
        "PickupGestureWiimoteZ",
        "PigAirwayPressure",
        "PigArtPressure",
        "PigCVP",
        "PLAID",
        "PowerCons",
        "Rock",
        "SemgHandGenderCh2",
        "SemgHandMovementCh2",
        "SemgHandSubjectCh2",
        "ShakeGestureWiimoteZ",
        "SmoothSubspace",
        "UMD",
    ]
)


class SeriesDataError(ConfigError):
    """A UCR/UEA problem is unknown, or not shipped with aeon, not under ``root`` and could not be downloaded.

    A :class:`~ssl_core.ConfigError` (so also a ``ValueError``): ``ssl run`` prints its
    one-line message, which says what was tried and which ``--root`` layout works.
    """


def _why(exc: BaseException) -> str:
    """``Type: first line of the message``: enough to tell a network error from a bad file, on one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class SeriesDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Samples ``(x [T, C], y, index)`` from an ``[N, T, C]`` array and labels.

    Example:
        >>> ds = SeriesDataset(np.zeros((3, 5, 1)), np.array([0, 1, 0]))
        >>> ds[1][0].shape, int(ds[1][1])
        (torch.Size([5, 1]), 1)
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} series but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        return self.x[index], self.y[index], int(index)


def collate_series(samples: Sequence[tuple[Tensor, Tensor, int]]) -> dict[str, Tensor]:
    """Stack ``(x, y, index)`` samples into a batch; steps with a NaN become padding (zeros in ``x``).

    Example:
        >>> b = collate_series([(torch.tensor([[1.0], [float("nan")]]), torch.tensor(0), 7)])
        >>> b["x"].tolist(), b["padding_mask"].tolist(), b["index"].tolist()
        ([[[1.0], [0.0]]], [[False, True]], [7])
    """
    xs, ys, idx = zip(*samples, strict=True)
    x = torch.stack(list(xs))
    padding = torch.isnan(x).any(dim=-1)
    return {
        "x": x.masked_fill(padding.unsqueeze(-1), 0.0).nan_to_num(0.0),
        "y": torch.stack(list(ys)),
        "padding_mask": padding,
        "index": torch.tensor(idx, dtype=torch.long),
    }


def known_datasets() -> list[str]:
    """Names of the UCR (univariate) and UEA (multivariate) problems aeon knows.

    Example:
        >>> "GunPoint" in known_datasets()
        True
    """
    from aeon.datasets import tsc_datasets

    return sorted(set(tsc_datasets.univariate) | set(tsc_datasets.multivariate) | set(tsc_datasets.univariate2015))


def _to_ntc(x: Any) -> np.ndarray:
    """aeon's ``[N, C, T]`` array or list of ``[C, T_i]`` arrays -> ``[N, T, C]`` float32, NaN-padded."""
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float32)
    series = [np.asarray(s, dtype=np.float32) for s in x]
    series = [s[None, :] if s.ndim == 1 else s for s in series]
    length = max(s.shape[1] for s in series)
    channels = series[0].shape[0]
    out = np.full((len(series), length, channels), np.nan, dtype=np.float32)
    for i, s in enumerate(series):  # loading only, once per dataset
        out[i, : s.shape[1]] = s.T
    return out


def _check_rows(x: np.ndarray, split: str, name: str) -> None:
    empty = np.isnan(x).all(axis=(1, 2))
    if empty.any():
        rows = np.flatnonzero(empty).tolist()
        raise ValueError(
            f"{name}: {split} sample(s) {rows[:10]}{' ...' if len(rows) > 10 else ''} are all NaN; "
            "remove them from the data (a series needs at least one observed value)"
        )


def ts2vec_normalize(
    train: np.ndarray, test: np.ndarray, mode: Normalize, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise as TS2Vec does; statistics come from the train split only (NaN ignored).

    ``"ts2vec"``: multivariate (UEA) series are standardised per channel; univariate
    (UCR) series are left as the archive z-normalised them, except the problems the
    archive leaves raw, which are standardised over the whole train split.
    ``"dataset"`` and ``"channel"`` force one of the two; ``"none"`` leaves values as they are.

    Example:
        >>> tr, te = ts2vec_normalize(np.array([[[0.0], [2.0]]]), np.array([[[4.0], [2.0]]]), "dataset")
        >>> tr.ravel().tolist(), te.ravel().tolist()
        ([-1.0, 1.0], [3.0, 1.0])
    """
    if mode == "ts2vec":
        mode = "channel" if train.shape[-1] > 1 else ("dataset" if name in _UCR_UNNORMALISED else "none")
    if mode == "none":
        return train, test
    if mode == "dataset":
        mean, std = np.nanmean(train), np.nanstd(train)
    elif mode == "channel":
        mean, std = np.nanmean(train, axis=(0, 1)), np.nanstd(train, axis=(0, 1))
    else:
        raise ValueError(f"normalize must be 'ts2vec', 'dataset', 'channel' or 'none', got {mode!r}")
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _splits(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    name: str,
    normalize: Normalize,
    info: dict[str, Any],
) -> DatasetSplits:
    if x_train.shape[1:] != x_test.shape[1:]:  # pad the shorter split to the longer length with NaN
        length = max(x_train.shape[1], x_test.shape[1])
        x_train, x_test = (
            np.pad(a, ((0, 0), (0, length - a.shape[1]), (0, 0)), constant_values=np.nan) for a in (x_train, x_test)
        )
    if x_train.shape[2] != x_test.shape[2]:
        raise ValueError(f"{name}: train has {x_train.shape[2]} channels but test has {x_test.shape[2]}")
    _check_rows(x_train, "train", name)
    _check_rows(x_test, "test", name)
    classes = np.unique(y_train)
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    unseen = sorted({str(v) for v in y_test.tolist()} - {str(v) for v in lookup})
    if unseen:
        raise ValueError(f"{name}: test labels {unseen[:5]} do not occur in the train split")
    train_labels = np.array([lookup[v] for v in y_train.tolist()], dtype=np.int64)
    test_labels = np.array([lookup[v] for v in y_test.tolist()], dtype=np.int64)
    x_train, x_test = ts2vec_normalize(x_train, x_test, normalize, name)
    n, t, c = x_train.shape
    lengths = (~np.isnan(x_train).any(axis=2)).sum(axis=1)
    return DatasetSplits(
        train=SeriesDataset(x_train, train_labels),
        test=SeriesDataset(x_test, test_labels),
        collate=collate_series,
        modality="timeseries",
        num_classes=len(classes),
        info={
            "in_channels": int(c),
            "series_length": int(t),
            "min_length": int(lengths.min()),
            "num_values": int(n * t * c),
            "dataset": name,
            "classes": [str(v) for v in classes.tolist()],
            **info,
        },
    )


def _load(dataset: str, split: str, root: str | None, equal_length: bool) -> tuple[Any, Any]:
    from aeon.datasets import load_classification

    x, y = load_classification(
        dataset, split=split, extract_path=root, load_equal_length=equal_length, load_no_missing=False
    )
    return x, y


def _has_copy(folder: Path, dataset: str) -> bool:
    """``folder/<name>/<name>_TRAIN.ts`` and ``_TEST.ts``: the layout aeon reads (and extracts downloads to)."""
    return all((folder / dataset / f"{dataset}_{part}.ts").is_file() for part in ("TRAIN", "TEST"))


def _aeon_folders() -> tuple[Path, Path]:
    """aeon's bundled data folder (inside its wheel) and its download folder (``$AEON_DATA`` or ``~/aeon_data``)."""
    import aeon.datasets

    bundled = Path(aeon.datasets.__file__).parent / "data"
    return bundled, Path(os.environ.get("AEON_DATA") or "~/aeon_data").expanduser()


def _zenodo_source(dataset: str) -> str:
    try:
        from aeon.datasets.tsc_datasets import tsc_zenodo

        return f"https://zenodo.org/records/{tsc_zenodo[dataset]}"
    except (ImportError, KeyError):
        return "Zenodo (https://zenodo.org/communities/tsml)"


def _layout(dataset: str) -> str:
    return f"pass --root ROOT with ROOT/{dataset}/{dataset}_TRAIN.ts + ROOT/{dataset}/{dataset}_TEST.ts"


def ucr(
    root: str | None = None, *, dataset: str = "GunPoint", normalize: Normalize = "ts2vec", equal_length: bool = False
) -> DatasetSplits:
    """A UCR (univariate) or UEA (multivariate) problem by name, through ``aeon.datasets.load_classification``.

    The sets bundled with aeon (GunPoint, ArrowHead, ItalyPowerDemand, BasicMotions, ...)
    load offline; a copy under ``root`` (``ROOT/<name>/<name>_TRAIN.ts`` and ``_TEST.ts``)
    comes first. Any other problem is downloaded by aeon from Zenodo, automatically (there
    is no ``download`` option), into ``root`` or aeon's folder (``$AEON_DATA`` or
    ``~/aeon_data``); offline, a :class:`SeriesDataError` names the source, the folder and
    the layout. Variable-length problems are NaN-padded at the end; labels map to
    ``0..K-1`` in sorted order; values are normalised as TS2Vec does (see :func:`ts2vec_normalize`).

    Args:
        root: folder of local copies / download target (aeon's ``extract_path``).
        dataset: the problem's name, e.g. ``"GunPoint"`` or ``"BasicMotions"``.
        normalize: ``"ts2vec"``, ``"dataset"``, ``"channel"`` or ``"none"``.
        equal_length: load aeon's equal-length version of variable-length problems instead.

    Raises:
        SeriesDataError: an unknown name (with close matches), or a problem neither shipped,
            nor under ``root``, nor downloadable (offline).
        ValueError: all-NaN series (naming them).

    Example:
        >>> ucr(dataset="BasicMotions").info["in_channels"]
        6
    """
    folder = Path(root).expanduser() if root is not None else None
    bundled, aeon_home = _aeon_folders()
    if folder is not None and _has_copy(folder, dataset):
        source: str | None = str(folder)
    elif _has_copy(bundled, dataset):
        source = None  # shipped in aeon's wheel: no download, whatever root is
    else:
        known = known_datasets()
        if dataset not in known:
            lower = {name.lower(): name for name in known}
            close = difflib.get_close_matches(dataset.lower(), list(lower), n=5, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(repr(lower[c]) for c in close)}?"
                if close else "see aeon.datasets.tsc_datasets"
            )  # fmt: skip
            where = f"; {folder / dataset} does not hold it either: {_layout(dataset)}" if folder else ""
            raise SeriesDataError(f"unknown UCR/UEA dataset {dataset!r}; {hint}{where}")
        source = str(folder) if folder is not None else None  # aeon downloads into root, or into aeon_home
    loaded = {}
    for split in ("train", "test"):
        try:
            x, y = _load(dataset, split, source, equal_length)
        except Exception as exc:  # aeon raises several types (ValueError wrapping a URLError, OSError)
            target = folder if folder is not None else aeon_home
            if (source is None and _has_copy(bundled, dataset)) or _has_copy(target, dataset):
                raise SeriesDataError(f"could not load {dataset!r} ({split}) through aeon: {_why(exc)}") from exc
            raise SeriesDataError(
                f"UCR/UEA {dataset!r} is not shipped with aeon nor in {target / dataset}, and aeon's download from "
                f"{_zenodo_source(dataset)} failed ({_why(exc)}); {_layout(dataset)} (the .ts files of "
                f"timeseriesclassification.com); aeon downloads the sets it does not ship automatically into "
                f"ROOT (or {aeon_home} without --root) when online (there is no download option)"
            ) from exc
        loaded[split] = (_to_ntc(x), np.asarray(y))
    (x_train, y_train), (x_test, y_test) = loaded["train"], loaded["test"]
    archive = "UEA" if x_train.shape[-1] > 1 else "UCR"
    return _splits(x_train, y_train, x_test, y_test, dataset, normalize, {"source": f"aeon ({archive})"})


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    table = np.genfromtxt(path, delimiter=delimiter, dtype=np.float64)
    if table.ndim == 1:
        table = table[None, :]
    return table[:, 1:, None].astype(np.float32), table[:, 0]


def _as_ntc(x: np.ndarray, layout: str, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        return x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"{what} must be [N, T] or [N, T, C] (layout {layout!r}), got shape {x.shape}")
    return x if layout == "ntc" else np.ascontiguousarray(x.transpose(0, 2, 1))


def arrays(
    root: str | None = None,
    *,
    path: str | None = None,
    layout: Literal["ntc", "nct"] = "ntc",
    normalize: Normalize = "none",
) -> DatasetSplits:
    """Series from local files: a ``.npz`` or a folder of CSV/TSV tables.

    * ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``; ``x`` is ``[N, T]``
      or ``[N, T, C]`` (``layout = "nct"`` for ``[N, C, T]``); NaN marks padding.
    * a folder with ``train.csv`` / ``test.csv`` (or UCR's ``*_TRAIN.tsv`` / ``*_TEST.tsv``):
      one univariate series per row, the label in the first column.

    Args:
        root: base folder; ``path`` is relative to it (``path`` defaults to ``root``).
        path: the ``.npz`` file or the folder.
        layout: axis order of 3-D arrays in the ``.npz``.
        normalize: as :func:`ts2vec_normalize` (default ``"none"``).

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> np.savez(f, x_train=np.random.rand(4, 9), y_train=[0, 1, 0, 1], x_test=np.random.rand(2, 9), y_test=[1, 0])
        >>> arrays(path=f).info["series_length"]
        9
    """
    if path is None and root is None:
        raise ValueError("timeseries.arrays needs path = '...' (a .npz file or a folder of CSV/TSV tables)")
    target = Path(root or ".") / path if path is not None else Path(str(root))
    if not target.exists():
        raise ValueError(f"timeseries.arrays: {target} does not exist")
    if target.is_file():
        with np.load(target, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
            if missing:
                raise ValueError(f"{target} lacks arrays {missing}; it holds {sorted(data.files)}")
            x_train = _as_ntc(data["x_train"], layout, "x_train")
            x_test = _as_ntc(data["x_test"], layout, "x_test")
            y_train, y_test = np.asarray(data["y_train"]), np.asarray(data["y_test"])
    else:
        found = {}
        for split in ("train", "test"):
            candidates = sorted(
                p
                for p in target.iterdir()
                if p.suffix.lower() in (".csv", ".tsv") and p.stem.lower().split("_")[-1] == split
            )
            if not candidates:
                raise ValueError(f"{target} has no {split}.csv / *_{split.upper()}.tsv table")
            found[split] = _read_table(candidates[0])
        (x_train, y_train), (x_test, y_test) = found["train"], found["test"]
    return _splits(x_train, y_train, x_test, y_test, target.stem, normalize, {"source": str(target)})


class MemmapSeriesDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Samples ``(x [T, C], y, index)`` read row by row from an ``[N, T, C]`` ``.npy`` file.

    Nothing is read at construction beyond the header. Each item is one ``os.pread`` of
    its row (through the page cache), not a page of a memory map: a mapped file's pages
    stay in a worker's resident set once touched, and the kernel's read-around maps far
    more than the row, so two workers of a 1 GB corpus held about 400 MB each after 30
    steps; reading rows keeps each worker's memory flat whatever the corpus size.
    Declares ``decodes_lazily`` so the training loop gives it DataLoader workers.

    Example:
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> np.save(os.path.join(folder, "x.npy"), np.arange(15, dtype=np.float32).reshape(3, 5, 1))
        >>> ds = MemmapSeriesDataset(os.path.join(folder, "x.npy"), np.array([0, 1, 0]))
        >>> ds[1][0].shape, ds[1][0][0, 0].item(), int(ds[1][1]), ds.decodes_lazily
        (torch.Size([5, 1]), 5.0, 1, True)
    """

    decodes_lazily = True

    def __init__(self, path: str | Path, y: np.ndarray) -> None:
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")  # the header only: shape, dtype and where the data starts
        self.x = header if header.ndim == 3 else header[:, :, None]
        self._offset, self._dtype = int(header.offset), header.dtype
        self._row_shape = tuple(int(d) for d in self.x.shape[1:])
        self._row_bytes = int(np.prod(self._row_shape)) * header.dtype.itemsize
        self._by_rows = header.flags.c_contiguous  # a Fortran-ordered file is read through the map instead
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
        self._fd: int | None = None
        if len(self.x) != len(self.y):
            raise SeriesDataError(f"{self.path}: {len(self.x)} series but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getstate__(self) -> dict[str, Any]:  # a descriptor is not sent to a spawned worker; it reopens
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]

    def _read_row(self, index: int) -> np.ndarray:
        if not self._by_rows:
            return np.array(self.x[index], dtype=np.float32)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, self._row_bytes, self._offset + index * self._row_bytes)
        return np.frombuffer(data, dtype=self._dtype).reshape(self._row_shape).astype(np.float32)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} series")
        return torch.from_numpy(self._read_row(index)), self.y[index], int(index)


def memmap(root: str | None = None) -> DatasetSplits:
    """Series too many for memory: ``x_train.npy`` / ``x_test.npy`` (``[N, T]`` or ``[N, T, C]``,
    float32 recommended) read through memory maps, with ``y_train.npy`` / ``y_test.npy``.

    Series are used as stored (normalise them when you write the arrays); labels may be any
    values present in the train split.

    Example:
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> for split, n in (("train", 6), ("test", 2)):
        ...     np.save(os.path.join(folder, f"x_{split}.npy"), np.random.rand(n, 9).astype(np.float32))
        ...     np.save(os.path.join(folder, f"y_{split}.npy"), np.arange(n) % 2)
        >>> splits = memmap(folder)
        >>> len(splits.train), splits.info["series_length"], splits.num_classes
        (6, 9, 2)
    """
    if root is None:
        raise SeriesDataError(
            "timeseries.memmap needs --root: a folder with x_train.npy, y_train.npy, x_test.npy, y_test.npy"
        )
    folder = Path(root)
    missing = [f for f in ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy") if not (folder / f).is_file()]
    if missing:
        raise SeriesDataError(f"timeseries.memmap: {folder} lacks {', '.join(missing)}")
    y_train, y_test = np.load(folder / "y_train.npy"), np.load(folder / "y_test.npy")
    classes = np.unique(y_train)
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    unseen = sorted({str(v) for v in y_test.tolist()} - {str(v) for v in lookup})
    if unseen:
        raise SeriesDataError(f"timeseries.memmap: test labels {unseen[:5]} do not occur in the train split")
    train = MemmapSeriesDataset(folder / "x_train.npy", np.array([lookup[v] for v in y_train.tolist()]))
    test = MemmapSeriesDataset(folder / "x_test.npy", np.array([lookup[v] for v in y_test.tolist()]))
    n, t, c = train.x.shape
    return DatasetSplits(
        train=train,
        test=test,
        collate=collate_series,
        modality="timeseries",
        num_classes=len(classes),
        info={"in_channels": int(c), "series_length": int(t), "num_series": int(n), "source": str(folder)},
    )
