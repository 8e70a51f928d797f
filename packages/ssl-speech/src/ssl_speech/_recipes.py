"""Recipes: wav2vec 2.0 and HuBERT pretraining on FSDD at a CPU scale, probed for digit and speaker.

The SMALL encoder (4 x 256, waveform CNN), bf16 autocast, length-bucketed batches of 16
utterances, AdamW with a 10% warm-up; then the utterance probe twice (``digit`` and
``speaker``) beside the same encoder at random init. Pass FSDD's ``recordings`` folder
with ``--root``. BASE-scale pretraining (LibriSpeech, 400k steps) needs a GPU; change
``encoder.preset`` and ``train.*``.

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
            "warmup_steps": steps // 10,
            "weight_decay": 0.01,
            "grad_clip": 10.0,
            "precision": "bf16",
            "log_every": 25,
            "eval_batch_size": 64,
        },
        "evaluate": [
            {"name": "speech.utterance_probe", "target": "digit"},
            {"name": "speech.utterance_probe", "target": "speaker"},
        ],
    }


def wav2vec2(steps: int = 2000) -> dict[str, Any]:
    """wav2vec 2.0 (mask 0.65 x 10, G=2 V=320 quantiser, 100 negatives) on FSDD's train split.

    Against the codebook collapse that short clips and small batches invite (docs/speech.md):
    diversity weight 1.0 (paper: 0.1), no feature penalty (fairseq drops it for the
    layer-normalised CNN of LARGE), peak learning rate 2e-4.
    """
    objective = {"name": "speech.wav2vec2", "diversity_weight": 1.0, "feature_penalty_weight": 0.0}
    return _pipeline("wav2vec2-fsdd", 0.65, objective, steps, lr=2e-4)


def hubert(labels: str | None = None, steps: int = 2000, num_clusters: int = 100) -> dict[str, Any]:
    """HuBERT iteration 1 (mask 0.8 x 10) on FSDD with the frame labels in ``labels`` (``ssl-speech labels``)."""
    config = _pipeline("hubert-fsdd", 0.8, {"name": "speech.hubert", "num_clusters": num_clusters}, steps, lr=5e-4)
    if labels is not None:
        config["data"]["labels"] = labels
    return config
