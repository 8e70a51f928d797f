"""Tiny data (issue 18): the utterance probe warns on small splits; wav2vec 2.0 end to end on a few FSDD files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_core import RunResult, run
from ssl_core.testing import ToyEncoder
from ssl_speech import UtteranceProbeEvaluator


def utterances(digits: list[int], speakers: list[int], seed: int = 0) -> list[dict[str, Any]]:
    """One batch of toy "utterances" ``[B, 5, 12]`` carrying FSDD's ``digit`` and ``speaker`` columns."""
    g = torch.Generator().manual_seed(seed)
    digit, speaker = torch.tensor(digits), torch.tensor(speakers)
    x = digit[:, None, None] + 0.3 * torch.randn(len(digits), 5, 12, generator=g)
    return [{"x": x, "y": digit, "digit": digit, "speaker": speaker}]


def test_utterance_probe_names_itself_and_its_target_on_too_few_utterances() -> None:
    train, test = utterances([0, 1, 0, 1], [0, 0, 0, 0]), utterances([0, 1], [0, 1], seed=1)
    probe = UtteranceProbeEvaluator(target="speaker", epochs=3, hidden_dim=8)
    with pytest.warns(UserWarning, match=r"speech\.utterance_probe \(target 'speaker'\): the train split holds a sin"):
        metrics = probe(ToyEncoder(), train, test)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_utterance_probe_with_fewer_utterances_than_digits() -> None:
    probe = UtteranceProbeEvaluator(target="digit", epochs=3, hidden_dim=8)
    with pytest.warns(UserWarning, match=r"speech\.utterance_probe \(target 'digit'\): 2 train samples for 3 classes"):
        metrics = probe(ToyEncoder(), utterances([0, 1], [0, 1]), utterances([0, 1, 2], [0, 1, 0], seed=1))
    assert 0.0 <= metrics["accuracy"] <= 1.0


# ---------------------------------------------------------------- wav2vec 2.0 end to end on FSDD files


def copy_fsdd(source: Path, target: Path, takes: dict[tuple[int, str], list[int]]) -> Path:
    """Copy ``{digit}_{speaker}_{take}.wav`` for the given takes into ``target``, named as speech.fsdd reads."""
    target.mkdir(parents=True)
    for (digit, speaker), chosen in takes.items():
        for take in chosen:
            shutil.copy(source / f"{digit}_{speaker}_{take}.wav", target)
    return target


def run_wav2vec2(root: Path, out: Path, *extra: str) -> RunResult:
    overrides = ["train.steps=2", "train.batch_size=8", "train.progress=false", "train.precision=fp32",
                 "train.eval_batch_size=8", "plots=true", "data.progress=false", *extra]  # fmt: skip
    return run("speech.wav2vec2", overrides=overrides, root=str(root), out=out)


def assert_complete(out: Path, result: RunResult) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    for probe in ("speech.utterance_probe", "speech.utterance_probe#2"):  # digit, then speaker
        assert 0.0 <= metrics["evaluations"][probe]["accuracy"] <= 1.0
    assert result.metrics["evaluations"]
    assert (out / "loss.png").is_file() and (out / "embeddings.png").is_file()


def test_wav2vec2_recipe_on_2_digits_16_plus_8_files(fsdd_root: Path, tmp_path: Path) -> None:
    # digits 0 and 1 by two speakers, takes 0-5: takes 0-1 are the test split (8 files), 2-5 train (16)
    takes = {(d, s): list(range(6)) for d in (0, 1) for s in ("george", "jackson")}
    root = copy_fsdd(fsdd_root, tmp_path / "recordings", takes)
    out = tmp_path / "run"
    result = run_wav2vec2(root, out, "encoder.preset=tiny", "data.test_takes=2")
    assert_complete(out, result)


def test_wav2vec2_recipe_with_13_test_files_regression(fsdd_root: Path, tmp_path: Path) -> None:
    # issue 18: 13 files in the test split (FSDD's takes 0-4) with the recipe's 256-d SMALL encoder made
    # plot_embeddings' PCA(n_components=50) fail after evaluation
    takes = {(0, "george"): [0, 1, 2, 3, 4, 5, 6, 7, 8], (0, "jackson"): [0, 1, 2, 5, 6, 7, 8],
             (1, "george"): [0, 1, 2, 5, 6, 7, 8], (1, "jackson"): [0, 1, 5, 6, 7, 8]}  # fmt: skip
    root = copy_fsdd(fsdd_root, tmp_path / "recordings", takes)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"plot_embeddings: only 13 test samples"):
        result = run_wav2vec2(root, out, "encoder.num_layers=2")
    assert_complete(out, result)
