"""Recipes: wav2vec 2.0 and HuBERT pretraining on FSDD at a CPU scale, probed for digit and speaker.

The SMALL encoder (4 x 256, waveform CNN), bf16 autocast where the CPU or GPU has it
natively (``precision="auto"``), length-bucketed batches of 16 utterances, AdamW with a
warm-up over the first 10% of the steps (``train.warmup_ratio``, so ``--set
train.steps=...`` keeps it at 10%); then the utterance probe twice (``digit`` and
``speaker``) beside the same encoder at random init. Pass FSDD's ``recordings`` folder with
``--root``. BASE-scale pretraining (LibriSpeech, 400k steps) needs a GPU; change
``encoder.preset`` and ``train.*``. Parameters come from ``--recipe steps=500`` or ``recipe
= {name = "speech.hubert", labels = "runs/fsdd-mfcc100.pt"}``.

Example:
    >>> wav2vec2()["objective"]["name"], hubert("labels.pt")["data"]["labels"]
    ('speech.wav2vec2', 'labels.pt')
"""

from __future__ import annotations

from typing import Any

__all__ = ["hubert", "wav2vec2"]


def _pipeline(name: str, mask_prob: float, objective: dict[str, Any], steps: int, lr: float) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "data": {"name": "speech.fsdd", "target": "digit"},
        "encoder": {"name": "speech.wav2vec2", "preset": "small", "frontend": "waveform"},
        "views": {"name": "speech.span_mask", "mask_prob": mask_prob, "mask_length": 10},
        "objective": objective,
        "train": {
            "steps": steps,
            "batch_size": 16,
            "lr": lr,
            "warmup_ratio": 0.1,
            "weight_decay": 0.01,
            "grad_clip": 10.0,
            "precision": "auto",
            "log_every": 25,
            "eval_batch_size": 64,
        },
        "evaluate": [
            {"name": "speech.utterance_probe", "target": "digit"},
            {"name": "speech.utterance_probe", "target": "speaker"},
        ],
    }


def _check_steps(recipe: str, steps: int) -> None:
    if steps < 1:
        raise ValueError(f"{recipe}: steps must be at least 1, got {steps}")


def wav2vec2(steps: int = 2000) -> dict[str, Any]:
    """wav2vec 2.0 (mask 0.65 x 10, G=2 V=320 quantiser, 100 negatives) on FSDD's train split.

    Against the codebook collapse that short clips and small batches invite (docs/speech.md):
    diversity weight 1.0 (paper: 0.1), no feature penalty (fairseq drops it for the
    layer-normalised CNN of LARGE), peak learning rate 2e-4.

    Args:
        steps: optimizer steps (``train.steps``); the warm-up is 10% of them.

    Example:
        >>> cfg = wav2vec2(steps=500)
        >>> cfg["train"]["steps"], cfg["train"]["warmup_ratio"], cfg["objective"]["diversity_weight"]
        (500, 0.1, 1.0)
    """
    _check_steps("speech.wav2vec2", steps)
    objective = {"name": "speech.wav2vec2", "diversity_weight": 1.0, "feature_penalty_weight": 0.0}
    return _pipeline("wav2vec2-fsdd", 0.65, objective, steps, lr=2e-4)


def hubert(
    labels: str | None = None,
    steps: int = 2000,
    num_clusters: int = 100,
    data: str = "speech.fsdd",
    lr: float = 5e-4,
) -> dict[str, Any]:
    """HuBERT iteration 1 (mask 0.8 x 10, peak learning rate 5e-4) on FSDD with the frame labels in ``labels``.

    Args:
        labels: a label file from ``ssl hubert-labels`` (:func:`~ssl_speech.hubert_labels`);
            ``None`` leaves ``data.labels`` unset (give it with ``--set data.labels=PATH``).
        steps: optimizer steps (``train.steps``); the warm-up is 10% of them.
        num_clusters: k of the label file (100 for MFCC labels, 500 for iteration 2).
        data: the dataset (every speech dataset takes ``labels``). Another than
            ``speech.fsdd`` gets ``data = {name = data}`` and one utterance probe of its
            own ``y`` labels (FSDD's ``target`` and ``digit`` / ``speaker`` probes would not fit).
        lr: the peak learning rate. 5e-4 suits FSDD's 2,700 clips; on a corpus of about 600
            short clips it left the encoder level with random init, and 2e-4 gave +13.7 digit
            points in the same 1,000 steps (docs/speech.md).

    Example:
        >>> cfg = hubert("runs/fsdd-h1-l3.pt", steps=400, num_clusters=500)
        >>> cfg["data"]["labels"], cfg["objective"]["num_clusters"], cfg["train"]["steps"]
        ('runs/fsdd-h1-l3.pt', 500, 400)
        >>> "labels" in hubert()["data"], hubert(lr=2e-4)["train"]["lr"]
        (False, 0.0002)
        >>> folder = hubert("labels.pt", data="speech.audio_folder")
        >>> folder["data"], folder["evaluate"]
        ({'name': 'speech.audio_folder', 'labels': 'labels.pt'}, [{'name': 'speech.utterance_probe'}])
    """
    _check_steps("speech.hubert", steps)
    if num_clusters < 2:
        raise ValueError(f"speech.hubert: num_clusters must be at least 2, got {num_clusters}")
    if not lr > 0:
        raise ValueError(f"speech.hubert: lr must be positive, got {lr}")
    config = _pipeline("hubert-fsdd", 0.8, {"name": "speech.hubert", "num_clusters": num_clusters}, steps, lr=lr)
    if data != "speech.fsdd":
        config.update(name=f"hubert-{data.rpartition('.')[2]}", data={"name": data})
        config["evaluate"] = [{"name": "speech.utterance_probe"}]
    if labels is not None:
        config["data"]["labels"] = labels
    return config
