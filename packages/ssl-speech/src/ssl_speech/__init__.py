"""Speech plugin for ssl-core: wav2vec 2.0 / HuBERT encoders on torchaudio components, FSDD and audio folders.

Components (entry points, loaded lazily by ssl-core): encoder ``speech.wav2vec2``; views
``speech.span_mask``, ``speech.multi_crop`` (random crops for DINO-style objectives);
objectives ``speech.wav2vec2``, ``speech.hubert``; evaluator ``speech.utterance_probe``;
datasets ``speech.fsdd``, ``speech.audio_folder``, ``speech.librispeech``, ``speech.manifest``
(fairseq-style ``.tsv`` manifests decoded in DataLoader workers, :func:`write_manifest`); task
``speech.hubert_labels`` (for ``[[stage]]`` pipelines). HuBERT's frame labels: :func:`hubert_labels`.
Importing this package does not import torchaudio or soundfile.

Example:
    >>> import ssl_speech
    >>> "Wav2Vec2Encoder" in ssl_speech.__all__
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__: str = version("ssl-speech")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "AudioDataError": "_data",
    "AudioDataset": "_data",
    "audio_folder": "_data",
    "collate_audio": "_data",
    "download_fsdd": "_data",
    "fsdd": "_data",
    "librispeech": "_data",
    "load_audio": "_data",
    "ManifestDataset": "_manifest",
    "manifest": "_manifest",
    "read_manifest": "_manifest",
    "write_manifest": "_manifest",
    "FbankFrontend": "_encoders",
    "FramesFrontend": "_encoders",
    "MFCCEncoder": "_encoders",
    "PRESETS": "_encoders",
    "Wav2Vec2Encoder": "_encoders",
    "WaveformFrontend": "_encoders",
    "UtteranceProbeEvaluator": "_evaluators",
    "AudioMultiCropViews": "_views",
    "SpanMaskViews": "_views",
    "HuBERTObjective": "_objectives",
    "hubert": "_recipes",
    "wav2vec2": "_recipes",
    "Wav2Vec2Objective": "_objectives",
    "attach_labels": "_label_files",
    "hubert_labels": "_labels",
    "hubert_labels_task": "_labels",
    "layer_features": "_labels",
    "load_labels": "_label_files",
    "mfcc_features": "_labels",
    "save_labels": "_label_files",
    "functional": "",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (the package itself stays light)."""
    if name in _LAZY:
        from importlib import import_module

        module = import_module(f"{__name__}.{_LAZY[name] or name}")
        value = module if not _LAZY[name] else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
