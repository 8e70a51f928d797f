"""Manifest-based audio datasets for corpora too large to hold in memory (fairseq's ``.tsv`` format).

A manifest is a folder with ``train.tsv`` and ``test.tsv`` (``valid.tsv`` is read when there
is no ``test.tsv``, as fairseq names it). Each ``.tsv`` starts with the audio root folder,
then one line per file, ``relative/path.wav<TAB>num_samples`` (samples at the file's own
rate, read from its header). Labels, when the layout has them, are in a parallel
``train.labels`` / ``test.labels``: a header line of column names, then one tab-separated
line per manifest row (the ``.tsv`` stays readable by fairseq). ``manifest.json`` records
the layout, the files' sample rate (when they share one) and the counts.

:func:`write_manifest` (``ssl speech-manifest``) reads headers only (``soundfile.info``);
:func:`manifest` (dataset ``speech.manifest``) decodes each file in ``__getitem__``
(DataLoader workers), crops to ``max_sample_size`` with :func:`ssl_core.sample_generator`
and returns :class:`ssl_core.SkippedItem` for a file it cannot decode.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "train.tsv"), "w") as f:
    ...     _ = f.write("/data/audio\\nspk1/a.wav\\t16000\\nspk2/b.flac\\t24000\\n")
    >>> root, rows = read_manifest(os.path.join(folder, "train.tsv"))
    >>> str(root), rows
    ('/data/audio', [('spk1/a.wav', 16000), ('spk2/b.flac', 24000)])
    >>> held_out("spk1/a.wav", 0.5, seed=0) == held_out("spk1/a.wav", 0.5, seed=0)
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import DatasetSplits, SkippedItem, sample_generator

from ._data import (
    AUDIO_SUFFIXES,
    LIBRISPEECH_SUBSETS,
    WAV2VEC2_RECEPTIVE_FIELD,
    AudioDataError,
    collate_audio,
    read_native,
    resample,
)
from ._label_files import takes_label_file

__all__ = [
    "LAYOUTS",
    "ManifestDataset",
    "held_out",
    "manifest",
    "read_labels",
    "read_manifest",
    "write_manifest",
]

LAYOUTS = ("folder", "fsdd", "librispeech")
"""Folder layouts :func:`write_manifest` knows."""

Layout = Literal["folder", "fsdd", "librispeech"]

DEFAULT_EXTENSIONS = tuple(suffix.lstrip(".") for suffix in AUDIO_SUFFIXES)
"""What ``write_manifest`` lists by default: wav, flac, ogg, mp3."""

_FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)$")
_WRITE_HINT = "rewrite the manifest with `ssl speech-manifest`"


# ---------------------------------------------------------------- the format


def read_manifest(path: str | Path) -> tuple[Path, list[tuple[str, int]]]:
    """``(root, [(relative_path, num_samples), ...])`` of one ``.tsv`` manifest.

    Raises:
        AudioDataError: the file is missing, empty, or a line is not ``path<TAB>count`` (line number given).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AudioDataError(f"cannot read the manifest {path} ({type(exc).__name__}: {exc})") from exc
    if not lines or not lines[0].strip():
        raise AudioDataError(f"{path}: a manifest starts with the audio root folder on its first line")
    rows: list[tuple[str, int]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, count = line.rstrip("\n").rpartition("\t")
        if not sep or not name or not count.strip().isdigit():
            raise AudioDataError(f"{path}, line {number}: expected 'relative/path<TAB>num_samples', got {line!r}")
        rows.append((name, int(count)))
    return Path(lines[0].strip()), rows


def read_labels(path: str | Path) -> dict[str, list[str]]:
    """The columns of a ``.labels`` file (a header of column names, then one tab-separated line per row).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "train.labels")
        >>> _ = open(path, "w").write("digit\\tspeaker\\n3\\tgeorge\\n7\\tlucas\\n")
        >>> read_labels(path)
        {'digit': ['3', '7'], 'speaker': ['george', 'lucas']}
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise AudioDataError(f"{path}: a .labels file starts with a header line of column names")
    names = lines[0].split("\t")
    columns: dict[str, list[str]] = {name: [] for name in names}
    for number, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        if len(values) != len(names):
            raise AudioDataError(f"{path}, line {number}: {len(values)} values for the columns {names}")
        for name, value in zip(names, values, strict=True):
            columns[name].append(value)
    return columns


def held_out(relative: str, fraction: float, seed: int = 0) -> bool:
    """Whether a file goes to the test split: a seeded hash of its relative path, stable across machines and runs."""
    digest = hashlib.sha1(f"{seed}:{relative}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


# ---------------------------------------------------------------- writing


def _scan(
    folder: Path, layout: Layout, extensions: Sequence[str], subsets: Sequence[str] | None
) -> tuple[Path, list[Path]]:
    """The audio root written on the manifest's first line and the files under it, sorted."""
    suffixes = {("." + e.lower().lstrip(".")) for e in extensions}
    if layout == "fsdd":
        root = folder / "recordings" if (folder / "recordings").is_dir() else folder
        files = sorted(p for p in root.glob("*.wav") if _FSDD_NAME.match(p.stem))
        if not files:
            raise AudioDataError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav) in {root}")
        return root, files
    if layout == "librispeech":
        root = folder / "LibriSpeech" if (folder / "LibriSpeech").is_dir() else folder
        if root.name in LIBRISPEECH_SUBSETS:  # given one subset's folder
            root, subsets = root.parent, [root.name]
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        chosen = list(subsets) if subsets else [s for s in found if s.startswith("train-")] or found
        missing = [s for s in chosen if s not in found]
        if missing or not chosen:
            raise AudioDataError(
                f"LibriSpeech subsets {missing or chosen} are not in {root} (found: {', '.join(found) or 'none'}); "
                "pass the folder holding LibriSpeech/<subset>/<speaker>/<chapter>/*.flac"
            )
        files = sorted(p for s in chosen for p in (root / s).rglob("*") if p.suffix.lower() in suffixes)
        if not files:
            raise AudioDataError(f"no {', '.join(sorted(suffixes))} files under {root} in {', '.join(chosen)}")
        return root, files
    if layout != "folder":
        raise AudioDataError(f"unknown manifest layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise AudioDataError(f"no audio files ({', '.join(sorted(suffixes))}) under {folder}")
    return folder, files


def _row_labels(layout: Layout, relative: str) -> dict[str, str]:
    parts = relative.split("/")
    if layout == "fsdd":
        match = _FSDD_NAME.match(Path(relative).stem)
        assert match is not None
        return {"digit": match.group(1), "speaker": match.group(2)}
    if layout == "librispeech":  # <subset>/<speaker>/<chapter>/<file>
        return {"speaker": parts[-3], "chapter": parts[-2]} if len(parts) >= 3 else {"speaker": "", "chapter": ""}
    return {"label": "/".join(parts[:-1]) or "."}


def write_manifest(
    folder: str | Path,
    out: str | Path,
    layout: Layout = "folder",
    valid_fraction: float = 0.01,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    subsets: Sequence[str] | None = None,
    test_takes: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out/train.tsv`` and ``out/test.tsv`` (+ ``.labels``, ``manifest.json``) for the audio under ``folder``.

    Only headers are read (``soundfile.info``), so a 960 h corpus takes minutes, not hours.
    The split: FSDD's takes ``0 .. test_takes - 1`` are the test split (as ``speech.fsdd``);
    other layouts hold out ``valid_fraction`` of the files by a seeded hash of the relative
    path (:func:`held_out`: a file keeps its side when files are added). Labels: FSDD
    ``digit`` and ``speaker``; LibriSpeech ``speaker`` and ``chapter`` (from the path);
    a folder ``label`` (the parent folder, relative to the root). LibriSpeech reads
    ``subsets`` of ``folder/LibriSpeech`` (default: the ``train-*`` ones, 960 h when all
    three are there; all subsets when none is ``train-*``).

    Files whose header cannot be read, or that hold no samples, are left out with a
    warning naming each (counted in ``manifest.json``).

    Returns:
        the summary also written to ``out/manifest.json``.

    Raises:
        AudioDataError: no audio under ``folder``, or nothing readable.
    """
    import soundfile
    from tqdm.auto import tqdm

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise AudioDataError(f"{folder} is not a folder of audio files")
    if not 0.0 <= valid_fraction < 1.0:
        raise AudioDataError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    root, files = _scan(folder, layout, extensions, subsets)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    labels: dict[str, list[dict[str, str]]] = {"train": [], "test": []}
    rates: dict[int, int] = {}
    skipped: list[str] = []
    for path in tqdm(files, desc="reading headers", unit="file", disable=not progress, leave=False):
        relative = path.relative_to(root).as_posix()
        try:
            info = soundfile.info(str(path))
        except Exception as exc:
            warnings.warn(f"leaving out {path}: cannot read its header ({type(exc).__name__}: {exc})", stacklevel=2)
            skipped.append(str(path))
            continue
        if info.frames <= 0:
            warnings.warn(f"leaving out {path}: the header says it holds no samples", stacklevel=2)
            skipped.append(str(path))
            continue
        if layout == "fsdd":
            match = _FSDD_NAME.match(path.stem)
            test = match is not None and int(match.group(3)) < test_takes
        else:
            test = held_out(relative, valid_fraction, seed)
        split = "test" if test else "train"
        rows[split].append((relative, int(info.frames)))
        labels[split].append(_row_labels(layout, relative))
        rates[int(info.samplerate)] = rates.get(int(info.samplerate), 0) + 1
    if not rows["train"]:
        raise AudioDataError(f"none of the {len(files)} audio files under {root} went to the train split")
    target = Path(out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    columns = list(labels["train"][0])
    for split in ("train", "test"):
        lines = [str(root), *(f"{name}\t{count}" for name, count in rows[split])]
        _write_atomic(target / f"{split}.tsv", "\n".join(lines) + "\n")
        label_lines = ["\t".join(columns), *("\t".join(row[c] for c in columns) for row in labels[split])]
        _write_atomic(target / f"{split}.labels", "\n".join(label_lines) + "\n")
    summary: dict[str, Any] = {
        "layout": layout,
        "root": str(root),
        "sample_rate": next(iter(rates)) if len(rates) == 1 else None,
        "sample_rates": {str(rate): count for rate, count in sorted(rates.items())},
        "splits": {split: len(rows[split]) for split in rows},
        "hours": {
            split: round(sum(n / next(iter(rates)) for _, n in rows[split]) / 3600, 3) if len(rates) == 1 else None
            for split in rows
        },
        "label_columns": columns,
        "split_rule": f"takes < {test_takes}" if layout == "fsdd" else f"hash(seed={seed}) < {valid_fraction}",
        "skipped_files": len(skipped),
        "skipped": skipped[:20],
    }
    _write_atomic(target / "manifest.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- reading: the dataset


class ManifestDataset(Dataset[Any]):
    """The files of one manifest split, decoded (and cropped) in ``__getitem__``.

    Items are ``{"x": waveform [T] at sample_rate, "index", "file", <label columns>}``; a
    file that cannot be decoded is a :class:`~ssl_core.SkippedItem`. Label columns are
    class indices; tensor-valued columns (HuBERT frame labels, ``"targets"``) are cropped
    with the audio. Paths are kept as one byte string with offsets, not a list of Python
    strings, so forked DataLoader workers share them instead of copying (as fairseq does).
    """

    decodes_lazily = True

    def __init__(
        self,
        manifest_file: Path,
        root: Path,
        rows: Sequence[tuple[str, int]],
        lines: Sequence[int],
        native_rate: int | None,
        sample_rate: int,
        max_sample_size: int | None,
        seed: int,
        labels: dict[str, Any],
    ) -> None:
        self.manifest_file, self.root, self.native_rate = manifest_file, root, native_rate
        self.sample_rate, self.max_sample_size, self.seed, self.epoch = sample_rate, max_sample_size, seed, 0
        encoded = [name.encode() for name, _ in rows]
        self._names = b"".join(encoded)
        self._offsets = np.cumsum([0, *(len(e) for e in encoded)]).astype(np.int64)
        self._frames = np.asarray([n for _, n in rows], dtype=np.int64)
        self._lines = np.asarray(lines, dtype=np.int64)
        self.labels: dict[str, Any] = dict(labels)
        self.hop = sample_rate // 50  # 20 ms: one HuBERT label / encoder frame
        self.receptive_field = WAV2VEC2_RECEPTIVE_FIELD * sample_rate // 16000

    def __len__(self) -> int:
        return len(self._frames)

    def name(self, index: int) -> str:
        """The relative path of row ``index`` (as written in the manifest)."""
        return self._names[self._offsets[index] : self._offsets[index + 1]].decode()

    def set_epoch(self, epoch: int) -> None:
        """Crops depend on ``(seed, epoch, index)`` only (:func:`ssl_core.sample_generator`)."""
        self.epoch = epoch

    def full_lengths(self) -> list[int]:
        """Samples per file at ``sample_rate``, from the manifest (no decoding)."""
        return [_at_rate(int(n), self.native_rate, self.sample_rate) for n in self._frames]

    def lengths(self) -> list[int]:
        """Samples per item at ``sample_rate``, capped at ``max_sample_size`` (for length-bucketed batches)."""
        cap = self.max_sample_size
        return [min(n, cap) if cap is not None else n for n in self.full_lengths()]

    def whole(self) -> ManifestDataset:
        """The same rows without cropping (HuBERT labels are made on whole files)."""
        copy = ManifestDataset.__new__(ManifestDataset)
        copy.__dict__.update(self.__dict__)
        copy.max_sample_size, copy.labels = None, {k: v for k, v in self.labels.items() if not _is_frames(v)}
        return copy

    def __getitem__(self, index: int) -> Any:
        path = self.root / self.name(index)
        if not path.is_file():
            raise AudioDataError(
                f"{path} is missing (line {int(self._lines[index])} of {self.manifest_file}); the audio moved or "
                f"the manifest is stale: {_WRITE_HINT}"
            )
        try:
            wave, rate = read_native(path)
        except AudioDataError as exc:
            return SkippedItem(str(path), str(exc).removeprefix(f"{path}: "))
        expected = int(self._frames[index])
        if wave.numel() != expected:
            raise AudioDataError(
                f"{path}: the manifest {self.manifest_file} (line {int(self._lines[index])}) records {expected} "
                f"samples but the file decodes to {wave.numel()}; {_WRITE_HINT}"
            )
        wave = resample(wave, rate, self.sample_rate)
        item: dict[str, Any] = {"index": index, "file": str(path)}
        start, frames = self._crop(index, wave.numel())
        if start is not None:
            wave = wave[start : start + self.max_sample_size]  # type: ignore[operator]
        item["x"] = wave
        for key, column in self.labels.items():
            value = column[index]
            if isinstance(value, Tensor) and start is not None:
                value = value[start // self.hop : start // self.hop + frames]
            item[key] = value.item() if isinstance(value, np.generic) else value
        return item

    def _crop(self, index: int, length: int) -> tuple[int | None, int]:
        """Where the crop starts (``None``: no crop) and how many 20 ms frames it holds."""
        cap = self.max_sample_size
        if cap is None or length <= cap:
            return None, 0
        generator = sample_generator(self.seed, self.epoch, index)
        if any(_is_frames(column) for column in self.labels.values()):  # frame labels: start on a frame boundary
            start = self.hop * int(torch.randint(0, (length - cap) // self.hop + 1, (1,), generator=generator))
        else:
            start = int(torch.randint(0, length - cap + 1, (1,), generator=generator))
        return start, (cap - self.receptive_field) // self.hop + 1


def _is_frames(column: Any) -> bool:
    return isinstance(column, list) and bool(column) and isinstance(column[0], Tensor)


def _at_rate(frames: int, native: int | None, rate: int) -> int:
    """``frames`` at ``native`` Hz as samples at ``rate`` (torchaudio's resample length: the ceiling)."""
    return frames if native is None or native == rate else -(-frames * rate // native)


def _class_order(values: Sequence[str]) -> list[str]:
    """Distinct values, numbers in numeric order, then the rest alphabetically."""
    return sorted(set(values), key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


@takes_label_file
def manifest(
    root: str | None = None,
    sample_rate: int = 16000,
    max_sample_size: int | None = None,
    min_sample_size: int = WAV2VEC2_RECEPTIVE_FIELD,
    target: str | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Dataset ``speech.manifest``: the files listed in ``root/train.tsv`` and ``root/test.tsv``, decoded lazily.

    Args:
        root: the manifest folder (written by ``ssl speech-manifest``, or fairseq's, with
            ``valid.tsv`` standing in for ``test.tsv``).
        sample_rate: files are resampled to it. Manifest lengths are at the files' own rate
            (``manifest.json``'s ``sample_rate``); without ``manifest.json`` they are taken to
            be at ``sample_rate`` already, as fairseq assumes.
        max_sample_size: random crop to this many samples (fairseq's), drawn from
            ``ssl_core.sample_generator(seed, epoch, index)``; ``None`` keeps whole files.
        min_sample_size: files shorter (by the manifest's lengths) are dropped at load.
        labels: a HuBERT label file (``ssl hubert-labels --data speech.manifest``), one
            utterance per manifest row left after ``min_sample_size``; its frame labels are
            cropped with the audio (crops then start on a 20 ms frame). Keyword-only, added by
            :func:`~ssl_speech._label_files.takes_label_file` as for every speech dataset.
        target: the label column that becomes ``y`` (``digit`` / ``speaker`` for FSDD,
            ``speaker`` / ``chapter`` for LibriSpeech, ``label`` for a folder); ``None``:
            the first column, when the manifest has labels.
        seed: the crops' seed.

    Raises:
        AudioDataError: no manifest in ``root``, a malformed line, an unknown ``target``,
            or the first listed file missing (a moved audio root).

    Example:
        >>> # skipped in doctests: manifests/fsdd stands for a folder written by `ssl speech-manifest`
        >>> splits = manifest("manifests/fsdd", max_sample_size=16000)  # doctest: +SKIP
        >>> splits.train.decodes_lazily  # doctest: +SKIP
        True
    """
    if root is None:
        raise AudioDataError(
            "speech.manifest needs --root DIR = a manifest folder (train.tsv, test.tsv) written by "
            "`ssl speech-manifest AUDIO_FOLDER --out DIR`"
        )
    folder = Path(root).expanduser()
    if max_sample_size is not None and max_sample_size < WAV2VEC2_RECEPTIVE_FIELD * sample_rate // 16000:
        raise AudioDataError(f"max_sample_size {max_sample_size} is shorter than the CNN's receptive field")
    files = {"train": folder / "train.tsv", "test": folder / "test.tsv"}
    if not files["test"].is_file() and (folder / "valid.tsv").is_file():
        files["test"] = folder / "valid.tsv"
    for path in files.values():
        if not path.is_file():
            raise AudioDataError(
                f"no {path.name} in {folder}; speech.manifest reads DIR/train.tsv and DIR/test.tsv written by "
                f"`ssl speech-manifest AUDIO_FOLDER --out DIR`"
            )
    meta_file = folder / "manifest.json"
    meta: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    native_rate = meta.get("sample_rate", sample_rate) if meta else sample_rate

    parsed = {split: read_manifest(path) for split, path in files.items()}
    columns: dict[str, dict[str, list[str]]] = {}
    for split, path in files.items():
        label_file = path.with_suffix(".labels")
        columns[split] = read_labels(label_file) if label_file.is_file() else {}
        for name, values in columns[split].items():
            if len(values) != len(parsed[split][1]):
                raise AudioDataError(
                    f"{label_file}: column {name!r} has {len(values)} rows for {len(parsed[split][1])}"
                )
    names = list(columns["train"])
    if target is not None and target not in names:
        raise AudioDataError(
            f"target {target!r} is not a label column of {folder} (columns: {', '.join(names) or 'none'})"
        )
    target = target if target is not None else (names[0] if names else None)
    classes = {name: _class_order(columns["train"][name] + columns["test"].get(name, [])) for name in names}

    dropped: dict[str, int] = {}

    def dataset(split: str) -> ManifestDataset:
        audio_root, rows = parsed[split]
        keep = [i for i, (_, n) in enumerate(rows) if _at_rate(n, native_rate, sample_rate) >= min_sample_size]
        dropped[split] = len(rows) - len(keep)
        label_columns: dict[str, Any] = {}
        for name in names:
            index = {value: i for i, value in enumerate(classes[name])}
            label_columns[name] = np.asarray([index[columns[split][name][i]] for i in keep], dtype=np.int64)
        if target is not None:
            label_columns["y"] = label_columns[target]
        return ManifestDataset(
            files[split], audio_root, [rows[i] for i in keep], [i + 2 for i in keep], native_rate, sample_rate,
            max_sample_size, seed, label_columns,
        )  # fmt: skip

    train, test = dataset("train"), dataset("test")
    if len(train) and not (train.root / train.name(0)).is_file():
        raise AudioDataError(
            f"{train.root / train.name(0)} (the first file of {files['train']}) is missing; the audio root on the "
            f"manifest's first line is {train.root}: {_WRITE_HINT} where the audio now is"
        )
    splits = DatasetSplits(
        train=train,
        test=test,
        collate=collate_audio,
        modality="audio",
        num_classes=len(classes[target]) if target is not None else None,
        info={
            "root": str(folder),
            "audio_root": str(train.root),
            "sample_rate": sample_rate,
            "manifest_sample_rate": native_rate,
            "max_sample_size": max_sample_size,
            "dropped_short": dropped,
            "label_columns": names,
            "target": target,
            "layout": meta.get("layout"),
        },
    )
    return splits
