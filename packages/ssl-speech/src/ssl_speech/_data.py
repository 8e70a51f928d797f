"""Speech datasets: any folder of audio files, and the Free Spoken Digit Dataset (FSDD).

Audio is decoded with soundfile, down-mixed to mono and resampled with torchaudio to the
pipeline's sample rate (16 kHz by default) once, when the dataset is built. Files that
cannot be decoded, are empty or are shorter than the encoder's receptive field are
skipped with a warning naming each file; their count is in ``DatasetSplits.info``.

A batch is ``{"x": [B, T] float32 waveforms (zero-padded), "lengths": [B],
"padding_mask": [B, T] (True on padding), "y": [B], ...}``; FSDD batches also carry
``"digit"`` and ``"speaker"``, so one run can be probed for both.

Example:
    >>> # skipped in doctests: reads the shared FSDD copy, absent outside this workspace
    >>> splits = fsdd("../shared/data/fsdd/recordings")  # doctest: +SKIP
    >>> len(splits.train), len(splits.test), splits.info["sample_rate"]  # doctest: +SKIP
    (2700, 300, 16000)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core import ConfigError, DatasetSplits

from ._label_files import takes_label_file

__all__ = [
    "AudioDataError",
    "AudioDataset",
    "audio_folder",
    "collate_audio",
    "download_fsdd",
    "fsdd",
    "librispeech",
    "load_audio",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
WAV2VEC2_RECEPTIVE_FIELD = 400
"""Samples the wav2vec 2.0 CNN needs for one output frame (25 ms at 16 kHz)."""


class AudioDataError(ConfigError):
    """An audio file or folder cannot be used: unreadable, empty, no usable files at all, or a failed download.

    A :class:`~ssl_core.ConfigError` (so also a ``ValueError``): ``ssl run`` prints its
    one-line message, which says what was tried and which ``--root`` layout works.
    """


def _why(exc: BaseException) -> str:
    """``Type: first line of the message``: enough to tell a network error from a bad archive, on one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def load_audio(path: str | Path, sample_rate: int = 16000) -> tuple[Tensor, int]:
    """Decode one file to a mono float32 waveform at ``sample_rate``; returns ``(waveform [T], original_rate)``.

    Multi-channel audio is averaged to mono; other sample rates are resampled with
    ``torchaudio.functional.resample``.

    Raises:
        AudioDataError: the file cannot be decoded or holds no samples (the message names it).

    Example:
        >>> # skipped in doctests: reads a file of the shared FSDD copy, absent outside this workspace
        >>> wave, rate = load_audio("../shared/data/fsdd/recordings/0_george_0.wav")  # doctest: +SKIP
        >>> rate, wave.dtype  # doctest: +SKIP
        (8000, torch.float32)
    """
    wave, rate = read_native(path)
    return resample(wave, rate, sample_rate), rate


def read_native(path: str | Path) -> tuple[Tensor, int]:
    """Decode one file with soundfile to a mono float32 waveform at its own rate: ``(waveform [T], rate)``.

    Raises:
        AudioDataError: the file cannot be decoded, holds no samples, or holds NaN / inf.
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioDataError(f"{path}: cannot decode audio ({type(exc).__name__}: {exc})") from exc
    if data.size == 0:
        raise AudioDataError(f"{path}: the file holds no audio samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if not torch.isfinite(wave).all():
        raise AudioDataError(f"{path}: the audio holds NaN or infinite samples")
    return wave, int(rate)


def resample(wave: Tensor, rate: int, sample_rate: int) -> Tensor:
    """``wave`` at ``sample_rate`` (``torchaudio.functional.resample``; unchanged when the rates agree)."""
    if rate == sample_rate:
        return wave
    import torchaudio.functional as AF

    resampled: Tensor = AF.resample(wave, rate, sample_rate)
    return resampled


@dataclass
class _Loaded:
    waves: list[Tensor] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resampled_from: set[int] = field(default_factory=set)


def _load_many(paths: Sequence[Path], sample_rate: int, min_samples: int, progress: bool) -> _Loaded:
    from tqdm.auto import tqdm

    out = _Loaded()
    for path in tqdm(paths, desc="decoding audio", unit="file", disable=not progress, leave=False):
        try:
            wave, rate = load_audio(path, sample_rate)
        except AudioDataError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=3)
            out.skipped.append(str(path))
            continue
        if wave.numel() < min_samples:
            warnings.warn(
                f"skipping {path}: {wave.numel()} samples at {sample_rate} Hz is shorter than the encoder's "
                f"receptive field ({min_samples} samples)",
                stacklevel=3,
            )
            out.skipped.append(str(path))
            continue
        if rate != sample_rate:
            out.resampled_from.add(rate)
        out.waves.append(wave)
        out.files.append(path)
    return out


class AudioDataset(Dataset[dict[str, Any]]):
    """Decoded waveforms with integer labels (and optional extra label columns).

    Example:
        >>> import torch
        >>> ds = AudioDataset([torch.zeros(500), torch.ones(700)], {"y": [0, 1]})
        >>> ds[1]["x"].shape, ds[1]["y"], ds[1]["index"]
        (torch.Size([700]), 1, 1)
    """

    def __init__(self, waves: list[Tensor], labels: dict[str, Sequence[Any]], files: Sequence[str] = ()) -> None:
        for key, values in labels.items():
            if len(values) != len(waves):
                raise ValueError(f"label column {key!r} has {len(values)} entries for {len(waves)} waveforms")
        self.waves, self.labels, self.files = waves, {k: list(v) for k, v in labels.items()}, list(files)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {"x": self.waves[index], "index": index, **{k: v[index] for k, v in self.labels.items()}}
        if self.files:
            item["file"] = self.files[index]
        return item

    def lengths(self) -> list[int]:
        """Samples per waveform (for length-bucketed batching)."""
        return [int(w.numel()) for w in self.waves]


def collate_audio(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad waveforms to the longest in the batch; add ``lengths`` and ``padding_mask``.

    Example:
        >>> import torch
        >>> b = collate_audio([{"x": torch.ones(3), "y": 0}, {"x": torch.ones(5), "y": 1}])
        >>> b["x"].shape, b["lengths"].tolist(), b["padding_mask"][0].tolist()
        (torch.Size([2, 5]), [3, 5], [False, False, False, True, True])
    """
    lengths = torch.tensor([int(s["x"].numel()) for s in samples])
    longest = int(lengths.max())
    x = torch.zeros(len(samples), longest)
    for row, sample in enumerate(samples):  # one copy per utterance; no per-sample Python maths
        x[row, : sample["x"].numel()] = sample["x"]
    batch: dict[str, Any] = {
        "x": x,
        "lengths": lengths,
        "padding_mask": torch.arange(longest).unsqueeze(0) >= lengths.unsqueeze(1),
    }
    for key in samples[0]:
        if key != "x":
            batch[key] = _collate_column([s[key] for s in samples])
    return batch


def _collate_column(values: list[Any]) -> Any:
    """Numbers -> a tensor; tensors -> stacked, or padded (``-100`` for integer frame labels); else a list."""
    if all(isinstance(v, Tensor) for v in values):
        if len({tuple(v.shape) for v in values}) == 1:
            return torch.stack(values)
        fill = -100 if not values[0].is_floating_point() else 0.0
        return torch.nn.utils.rnn.pad_sequence(values, batch_first=True, padding_value=fill)
    if all(isinstance(v, (int, float, bool, np.integer, np.floating)) for v in values):
        return torch.tensor(values)
    return list(values)


def _info(loaded: Sequence[_Loaded], sample_rate: int, extra: dict[str, Any]) -> dict[str, Any]:
    skipped = [f for part in loaded for f in part.skipped]
    rates = sorted({r for part in loaded for r in part.resampled_from})
    return {
        "sample_rate": sample_rate,
        "skipped_files": len(skipped),
        "skipped": skipped[:20],
        "resampled_from": rates,
        **extra,
    }


@takes_label_file
def audio_folder(
    root: str | None = None,
    sample_rate: int = 16000,
    label_from: Literal["parent", "none"] = "parent",
    test_fraction: float = 0.1,
    seed: int = 0,
    min_samples: int = WAV2VEC2_RECEPTIVE_FIELD,
    progress: bool = True,
) -> DatasetSplits:
    """Every audio file under ``root`` (recursively); labels from the parent folder's name.

    The test split is a seeded ``test_fraction`` of the files (stratified by label).
    ``labels = PATH`` attaches a HuBERT label file made from the same folder and settings
    (``ssl hubert-labels --data speech.audio_folder --root DIR``), as for every speech dataset.

    Raises:
        AudioDataError: ``root`` is missing or holds no decodable audio file.

    Example:
        >>> # skipped in doctests: my_audio/ stands for your own folder
        >>> splits = audio_folder("my_audio/")  # doctest: +SKIP
    """
    if root is None:
        raise AudioDataError("speech.audio_folder needs root = a folder of audio files (wav, flac, ogg, mp3)")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise AudioDataError(f"{folder} is not a folder; pass root = a folder of audio files")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise AudioDataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {folder}")
    loaded = _load_many(paths, sample_rate, min_samples, progress)
    if not loaded.waves:
        raise AudioDataError(f"none of the {len(paths)} audio files under {folder} could be used (see the warnings)")
    names = sorted({p.parent.name for p in loaded.files}) if label_from == "parent" else ["all"]
    labels = [names.index(p.parent.name) if label_from == "parent" else 0 for p in loaded.files]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    test = set(order[: max(1, int(test_fraction * len(order)))]) if len(order) > 1 else set()

    def pick(in_test: bool) -> AudioDataset:
        idx = [i for i in range(len(labels)) if (i in test) == in_test]
        return AudioDataset(
            [loaded.waves[i] for i in idx], {"y": [labels[i] for i in idx]}, [str(loaded.files[i]) for i in idx]
        )

    return DatasetSplits(
        train=pick(False),
        test=pick(True),
        collate=collate_audio,
        modality="audio",
        num_classes=len(names),
        info=_info([loaded], sample_rate, {"root": str(folder), "classes": names}),
    )


_FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)$")

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
"""FSDD's GitHub archive (the recordings live in ``<repo>/recordings/``)."""

_FSDD_LAYOUT = (
    "pass --root ROOT with FSDD's recordings as ROOT/recordings/{digit}_{speaker}_{take}.wav or "
    "ROOT/{digit}_{speaker}_{take}.wav (e.g. --root ../shared/data/fsdd/recordings)"
)


def download_fsdd(root: str | Path, url: str = FSDD_URL) -> Path:
    """Download FSDD's archive and extract its ``recordings/*.wav`` into ``root/recordings``; returns that folder.

    Atomic per file (written under a temporary name, then renamed); files already present
    are kept. Any ``url`` urllib can open works (``file://`` for a local copy).

    Example:
        >>> # skipped in doctests: a download
        >>> download_fsdd("data/fsdd")  # doctest: +SKIP
        PosixPath('data/fsdd/recordings')
    """
    import shutil
    import tempfile
    import urllib.request
    import zipfile

    target = Path(root).expanduser() / "recordings"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "fsdd.zip"
        try:
            with urllib.request.urlopen(url) as response, archive.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:  # URLError and HTTPError are OSErrors
            raise AudioDataError(
                f"could not download FSDD from {url} into {target} ({_why(exc)}); {_FSDD_LAYOUT}"
            ) from exc
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if re.search(r"(^|/)recordings/[^/]+\.wav$", m)]
            if not members:
                raise AudioDataError(f"{url} has no recordings/*.wav; is it FSDD's archive?")
            for member in members:
                final = target / Path(member).name
                if final.exists():
                    continue
                part = final.with_suffix(".part")
                with zipped.open(member) as src, part.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                part.replace(final)
    return target


@takes_label_file
def fsdd(
    root: str | None = None,
    sample_rate: int = 16000,
    target: Literal["digit", "speaker"] = "digit",
    test_takes: int = 5,
    min_samples: int = WAV2VEC2_RECEPTIVE_FIELD,
    limit: int | None = None,
    progress: bool = True,
    download: bool = False,
    train_takes: int | None = None,
) -> DatasetSplits:
    """The Free Spoken Digit Dataset: 3,000 8 kHz recordings ``{digit}_{speaker}_{take}.wav``.

    Resampled to ``sample_rate``. The test split is takes ``0 .. test_takes - 1`` of every
    (digit, speaker) (the usual split: 300 test, 2,700 train). ``y`` is the ``target``
    label; batches always carry both ``digit`` and ``speaker`` so a probe can choose.

    Args:
        root: the ``recordings`` folder (``../shared/data/fsdd/recordings`` here).
        limit: keep only the first ``limit`` files per split (sorted by name), for tests.
        labels: a HuBERT label file (:func:`ssl_speech.hubert_labels`) to attach as ``"targets"``
            (keyword-only, added by :func:`~ssl_speech._label_files.takes_label_file` as for every speech dataset).
        download: fetch FSDD from GitHub into ``root/recordings`` first when it has no
            recordings (:func:`download_fsdd`).
        train_takes: keep only takes ``test_takes .. test_takes + train_takes - 1`` in the
            train split: a small corpus with every digit and speaker (10: 600 clips).

    Raises:
        AudioDataError: no ``root``, or no file named like FSDD's.

    Example:
        >>> # skipped in doctests: reads the shared FSDD copy, absent outside this workspace
        >>> splits = fsdd("../shared/data/fsdd/recordings", target="speaker")  # doctest: +SKIP
        >>> splits.num_classes  # doctest: +SKIP
        6
    """
    if root is None:
        raise AudioDataError(
            f"speech.fsdd needs a folder: {_FSDD_LAYOUT}; or --root ROOT = where to put it with download = true "
            "(downloading is off by default)"
        )
    folder = Path(root).expanduser()
    if (folder / "recordings").is_dir():
        folder = folder / "recordings"
    paths = sorted(p for p in folder.glob("*.wav") if _FSDD_NAME.match(p.stem))
    if not paths and download:
        try:
            folder = download_fsdd(Path(root).expanduser())
        except AudioDataError as exc:  # it names the URL, the folder and the layout
            raise AudioDataError(f"{exc}; download = true fetches it there when online") from exc
        paths = sorted(p for p in folder.glob("*.wav") if _FSDD_NAME.match(p.stem))
    if not paths:
        raise AudioDataError(
            f"no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav) in {folder}; {_FSDD_LAYOUT}; "
            f"or set download = true to fetch them from {FSDD_URL} into ROOT/recordings (off by default)"
        )
    speakers = sorted({_FSDD_NAME.match(p.stem).group(2) for p in paths})  # type: ignore[union-attr]
    if train_takes is not None and train_takes < 1:
        raise AudioDataError(f"train_takes must be at least 1 (10 takes: 600 train clips), got {train_takes}")
    split: dict[str, list[Path]] = {"train": [], "test": []}
    for path in paths:
        take = int(_FSDD_NAME.match(path.stem).group(3))  # type: ignore[union-attr]
        if take < test_takes:
            split["test"].append(path)
        elif train_takes is None or take < test_takes + train_takes:
            split["train"].append(path)
    if limit is not None:
        split = {k: v[:limit] for k, v in split.items()}
    loaded = {k: _load_many(v, sample_rate, min_samples, progress) for k, v in split.items()}

    def dataset(part: _Loaded) -> AudioDataset:
        stems = [_FSDD_NAME.match(p.stem) for p in part.files]
        digits = [int(m.group(1)) for m in stems]  # type: ignore[union-attr]
        spk = [speakers.index(m.group(2)) for m in stems]  # type: ignore[union-attr]
        y = digits if target == "digit" else spk
        return AudioDataset(part.waves, {"y": y, "digit": digits, "speaker": spk}, [str(p) for p in part.files])

    if target not in ("digit", "speaker"):
        raise AudioDataError(f"target must be 'digit' or 'speaker', got {target!r}")
    splits = DatasetSplits(
        train=dataset(loaded["train"]),
        test=dataset(loaded["test"]),
        collate=collate_audio,
        modality="audio",
        num_classes=10 if target == "digit" else len(speakers),
        info=_info(
            list(loaded.values()),
            sample_rate,
            {"root": str(folder), "speakers": speakers, "num_speakers": len(speakers), "target": target},
        ),
    )
    return splits


LIBRISPEECH_URL = "http://www.openslr.org/resources/12/"
"""Where torchaudio downloads LibriSpeech's ``<subset>.tar.gz`` from."""

LIBRISPEECH_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                       "train-other-500")  # fmt: skip


@takes_label_file
def librispeech(
    root: str | None = None,
    subset: str = "train-clean-100",
    download: bool = False,
    sample_rate: int = 16000,
    test_fraction: float = 0.05,
    seed: int = 0,
    min_samples: int = WAV2VEC2_RECEPTIVE_FIELD,
    limit: int | None = None,
    progress: bool = True,
) -> DatasetSplits:
    """LibriSpeech via ``torchaudio.datasets.LIBRISPEECH`` (file list, transcripts, download), decoded with soundfile.

    ``download = true`` fetches ``subset`` from openslr.org into ``root`` (torchaudio's
    downloader); otherwise ``root/LibriSpeech/<subset>`` must exist. The test split is a
    seeded ``test_fraction`` of every speaker's utterances, so a speaker-ID probe
    (``y`` = speaker index) sees each speaker on both sides. Batches also carry
    ``speaker``, ``chapter`` and ``transcript``. ``labels = PATH`` attaches a HuBERT label
    file, as for every speech dataset.

    Raises:
        AudioDataError: no ``root``, an unknown ``subset``, or the subset is not there.

    Example:
        >>> # skipped in doctests: downloads LibriSpeech dev-clean (337 MB)
        >>> splits = librispeech("data/", subset="dev-clean", download=True)  # doctest: +SKIP
        >>> splits.info["num_speakers"]  # doctest: +SKIP
        40
    """
    if root is None:
        raise AudioDataError(
            f"speech.librispeech needs --root ROOT with ROOT/LibriSpeech/{subset}/<speaker>/<chapter>/*.flac "
            "(as torchaudio extracts it), or ROOT = where to put it with download = true (off by default)"
        )
    if subset not in LIBRISPEECH_SUBSETS:
        raise AudioDataError(f"unknown LibriSpeech subset {subset!r}; use one of {', '.join(LIBRISPEECH_SUBSETS)}")
    from torchaudio.datasets import LIBRISPEECH

    folder = Path(root).expanduser()
    if download:
        folder.mkdir(parents=True, exist_ok=True)  # torchaudio writes the archive there without creating it
    try:
        index = LIBRISPEECH(str(folder), url=subset, download=download)
    except Exception as exc:  # missing: RuntimeError; offline: URLError; a broken archive: tarfile's errors
        layout = (
            f"pass --root ROOT with ROOT/LibriSpeech/{subset}/<speaker>/<chapter>/*.flac and "
            "<speaker>-<chapter>.trans.txt (as torchaudio extracts it)"
        )
        missing = f"LibriSpeech {subset} is not in {folder / 'LibriSpeech' / subset}"
        if not download:
            raise AudioDataError(
                f"{missing}; {layout}; or set download = true to fetch it from {LIBRISPEECH_URL}{subset}.tar.gz "
                "into ROOT (off by default)"
            ) from exc
        raise AudioDataError(
            f"{missing} and downloading it from {LIBRISPEECH_URL}{subset}.tar.gz into {folder} failed "
            f"({_why(exc)}); {layout}; download = true fetches it there when online"
        ) from exc
    meta = [index.get_metadata(i) for i in range(len(index))][:limit]
    if not meta:
        raise AudioDataError(f"no .flac files in {folder / 'LibriSpeech' / subset}")
    speakers = sorted({m[3] for m in meta})
    by_speaker: dict[int, list[int]] = {}
    for i, m in enumerate(meta):
        by_speaker.setdefault(m[3], []).append(i)
    generator = torch.Generator().manual_seed(seed)
    test_ids: set[int] = set()
    for ids in by_speaker.values():
        if len(ids) > 1:
            order = torch.randperm(len(ids), generator=generator).tolist()
            test_ids.update(ids[j] for j in order[: max(1, round(test_fraction * len(ids)))])
    paths = {str(folder / "LibriSpeech" / m[0]): m for m in meta}

    def dataset(in_test: bool) -> tuple[AudioDataset, _Loaded]:
        chosen = [Path(folder / "LibriSpeech" / m[0]) for i, m in enumerate(meta) if (i in test_ids) == in_test]
        part = _load_many(chosen, sample_rate, min_samples, progress)
        rows = [paths[str(p)] for p in part.files]
        spk = [speakers.index(m[3]) for m in rows]
        columns: dict[str, Sequence[Any]] = {"y": spk, "speaker": spk, "chapter": [m[4] for m in rows],
                                             "transcript": [m[2] for m in rows]}  # fmt: skip
        return AudioDataset(part.waves, columns, [str(p) for p in part.files]), part

    train, train_loaded = dataset(False)
    test, test_loaded = dataset(True)
    splits = DatasetSplits(
        train=train,
        test=test,
        collate=collate_audio,
        modality="audio",
        num_classes=len(speakers),
        info=_info(
            [train_loaded, test_loaded],
            sample_rate,
            {"root": str(folder), "subset": subset, "num_speakers": len(speakers), "target": "speaker"},
        ),
    )
    return splits
