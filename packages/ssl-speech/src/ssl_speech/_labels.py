"""HuBERT's frame targets: k-means on MFCCs (iteration 1) or on a transformer layer (iteration 2).

One call makes the labels for both splits and saves them; a dataset loaded with
``labels = PATH`` then carries them under ``"targets"``.

Example:
    >>> from ssl_speech import fsdd
    >>> # skipped in doctests: reads the shared FSDD copy, absent outside this workspace
    >>> splits = fsdd("../shared/data/fsdd/recordings")  # doctest: +SKIP
    >>> labels = hubert_labels(splits, source="mfcc", num_clusters=100)  # doctest: +SKIP
    >>> save_labels(labels, "runs/fsdd-mfcc100.pt")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ssl_core import DatasetSplits, kmeans, kmeans_predict

from ._label_files import attach_labels, load_labels, save_labels

__all__ = [
    "attach_labels",
    "hubert_labels",
    "hubert_labels_task",
    "layer_features",
    "load_labels",
    "mfcc_features",
    "save_labels",
]

HOP = 320
"""Samples per encoder frame at 16 kHz (20 ms), the wav2vec 2.0 CNN's stride."""


def mfcc_features(wave: Tensor, sample_rate: int = 16000) -> Tensor:
    """39-d MFCC + deltas + delta-deltas per 20 ms frame, ``[frames, 39]``.

    25 ms windows, 20 ms hop, no centring: exactly one vector per wav2vec 2.0 CNN frame
    (``(T - 400) // 320 + 1``).

    Example:
        >>> mfcc_features(torch.randn(16000)).shape
        torch.Size([49, 39])
    """
    import torchaudio

    transform = _mfcc_transform(sample_rate)
    with torch.no_grad():
        coeffs = transform(wave.float().unsqueeze(0))[0]  # [13, frames]
        deltas = torchaudio.functional.compute_deltas(coeffs)
        accel = torchaudio.functional.compute_deltas(deltas)
    return torch.cat([coeffs, deltas, accel], dim=0).t().contiguous()


_MFCC_CACHE: dict[int, nn.Module] = {}


def _mfcc_transform(sample_rate: int) -> nn.Module:
    if sample_rate not in _MFCC_CACHE:
        import torchaudio

        _MFCC_CACHE[sample_rate] = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=13,
            melkwargs={"n_fft": int(0.025 * sample_rate), "hop_length": int(0.02 * sample_rate), "n_mels": 23,
                       "center": False},
        )  # fmt: skip
    return _MFCC_CACHE[sample_rate]


@torch.no_grad()
def layer_features(encoder: nn.Module, waves: Sequence[Tensor], layer: int, batch_size: int = 16) -> list[Tensor]:
    """Transformer layer ``layer`` (1-based) of a frozen encoder, one ``[frames, D]`` tensor per utterance.

    Example:
        >>> from ssl_speech import Wav2Vec2Encoder
        >>> feats = layer_features(Wav2Vec2Encoder(preset="tiny"), [torch.randn(8000)], layer=1)
        >>> feats[0].shape
        torch.Size([24, 64])
    """
    from ._data import collate_audio

    was_training = encoder.training
    encoder.eval()
    out: list[Tensor] = []
    try:
        device = next(encoder.parameters()).device
        for start in range(0, len(waves), batch_size):
            chunk = [{"x": w} for w in waves[start : start + batch_size]]
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in collate_audio(chunk).items()}
            features = encoder(batch)
            if features.layers is None or not 1 <= layer <= len(features.layers):
                count = 0 if features.layers is None else len(features.layers)
                raise ValueError(f"layer must be in 1..{count} for this encoder, got {layer}")
            states = features.layers[layer - 1].float().cpu()
            real = (~features.padding_mask).sum(dim=1).tolist() if features.padding_mask is not None else None
            for row in range(states.shape[0]):
                out.append(states[row, : real[row]] if real is not None else states[row])
    finally:
        encoder.train(was_training)
    return out


def _whole_waves(dataset: Any) -> list[Tensor]:
    """Every utterance of a split, uncropped (a manifest dataset's ``whole()``); an unreadable file is empty.

    An empty utterance gets no labels (an empty row keeps the label file aligned with the
    dataset's rows); training skips that file anyway.
    """
    import warnings

    from ssl_core import SkippedItem

    dataset = dataset.whole() if callable(getattr(dataset, "whole", None)) else dataset
    waves: list[Tensor] = []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, SkippedItem):
            warnings.warn(f"HuBERT labels: no labels for {item} (the file cannot be read)", stacklevel=3)
            waves.append(torch.zeros(0))
        else:
            waves.append(item["x"])
    return waves


def hubert_labels(
    splits: DatasetSplits,
    *,
    source: Literal["mfcc", "layer"] = "mfcc",
    encoder: nn.Module | None = None,
    layer: int = 6,
    num_clusters: int = 100,
    max_frames: int = 250_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Cluster every frame of the train split and label both splits with the nearest centroid.

    ``source = "mfcc"``: HuBERT iteration 1 (39-d MFCC + deltas); ``source = "layer"``:
    iteration 2, transformer layer ``layer`` of ``encoder``. k-means is ssl-core's
    (:func:`ssl_core.kmeans`, k-means++ on up to ``max_frames`` train frames).

    Returns:
        ``{"train": [LongTensor per utterance], "test": [...], "num_clusters", "source", "layer", "inertia"}``.
    """
    if source == "layer" and encoder is None:
        raise ValueError("source='layer' needs the iteration-1 encoder (encoder=...)")
    features: dict[str, list[Tensor]] = {}
    for name in ("train", "test"):
        waves = _whole_waves(getattr(splits, name))
        kept = [w for w in waves if w.numel()]
        if source == "mfcc":
            computed = iter([mfcc_features(w, int(splits.info.get("sample_rate", 16000))) for w in kept])
        else:
            computed = iter(layer_features(encoder, kept, layer))  # type: ignore[arg-type]
        features[name] = [next(computed) if w.numel() else torch.zeros(0, 1) for w in waves]
    frames = torch.cat([f for f in features["train"] if len(f)])
    if len(frames) < num_clusters:
        raise ValueError(f"only {len(frames)} train frames for {num_clusters} clusters; use fewer clusters")
    if len(frames) > max_frames:
        pick = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:max_frames]
        frames = frames[pick]
    result = kmeans(frames, num_clusters, seed=seed)
    labels = {
        name: [
            kmeans_predict(f, result.centroids).to(torch.int16) if len(f) else torch.zeros(0, dtype=torch.int16)
            for f in feats
        ]
        for name, feats in features.items()
    }
    return {
        **labels,
        "num_clusters": num_clusters,
        "source": source,
        "layer": layer if source == "layer" else None,
        "inertia": float(result.inertia),
    }


def hubert_labels_task(
    splits: DatasetSplits,
    out_dir: str | Path,
    encoder: nn.Module | None = None,
    source: Literal["mfcc", "layer"] = "mfcc",
    layer: int = 6,
    num_clusters: int = 100,
    max_frames: int = 250_000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``speech.hubert_labels`` task of ``[[stage]]`` pipelines: make, save and describe HuBERT labels.

    ``source = "layer"`` clusters layer ``layer`` of the encoder the previous stage
    trained (HuBERT iteration 2); ``"mfcc"`` needs no encoder (iteration 1). Writes
    ``labels.pt`` into the stage's folder and returns ``{"labels": path, "num_clusters",
    "inertia", "source"}``; a later stage uses ``data.labels = "${this-stage.labels}"``.

    Example (a stage)::

        [[stage]]
        name = "layer-labels"
        task = { name = "speech.hubert_labels", source = "layer", layer = 3, num_clusters = 100 }
    """
    if splits.modality != "audio":
        raise ValueError(f"HuBERT labels need an audio dataset, got {splits.modality!r} data")
    if source == "layer" and encoder is None:
        raise ValueError("source = 'layer' clusters the previous stage's encoder; put a pretrain stage before this one")
    labels = hubert_labels(
        splits,
        source=source,
        encoder=encoder if source == "layer" else None,
        layer=layer,
        num_clusters=num_clusters,
        max_frames=max_frames,
        seed=seed,
    )
    path = save_labels(labels, Path(out_dir) / "labels.pt")
    return {"labels": str(path), "num_clusters": num_clusters, "inertia": labels["inertia"], "source": source}
