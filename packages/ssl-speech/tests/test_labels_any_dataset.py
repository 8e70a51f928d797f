"""HuBERT label files on every speech dataset (issue 19): one shared ``labels = PATH`` keyword.

``ssl hubert-labels --data NAME`` prints an ``ssl run speech.hubert`` command for that
dataset; these tests run it (a couple of steps of the tiny encoder), train HuBERT from an
audio folder, label one in a ``[[stage]]`` pipeline, and check that a label file made for
another dataset is refused with both utterance counts.
"""

from __future__ import annotations

import inspect
import math
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

import ssl_core
import ssl_speech
from ssl_core import cli_main
from ssl_speech import audio_folder, fsdd, hubert_labels, save_labels, write_manifest

SPEECH_DATASETS = ("speech.audio_folder", "speech.fsdd", "speech.librispeech", "speech.manifest")
QUICK = ["--set", "train.steps=2", "--set", "train.batch_size=8", "--set", "train.progress=false",
         "--set", "encoder.preset=tiny", "--set", "objective.final_dim=32", "--set", "plots=false",
         "--set", "evaluate=[]", "--set", "compare_random_init=false"]  # fmt: skip


@pytest.fixture
def clips(fsdd_root: Path, tmp_path: Path) -> Path:
    """A folder of 20 short FSDD clips, two class folders (digits 0 and 1) of 10 each."""
    folder = tmp_path / "clips"
    for digit, name in ((0, "zero"), (1, "one")):
        (folder / name).mkdir(parents=True)
        for take in range(10):
            shutil.copy(fsdd_root / f"{digit}_george_{take}.wav", folder / name / f"{digit}_{take}.wav")
    return folder


def _labels_command(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    """Run ``ssl hubert-labels`` and return the ``ssl run`` command it printed, as argv (without ``ssl``)."""
    assert cli_main(["hubert-labels", *argv]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train with it: ")]
    assert len(lines) == 1
    words = shlex.split(lines[0].removeprefix("train with it: "))
    assert words[:3] == ["ssl", "run", "speech.hubert"]
    return words[1:]


def test_every_speech_dataset_takes_labels_through_one_decorator() -> None:
    registry = ssl_core.default_registry()
    for name in SPEECH_DATASETS:
        provider = registry.get("dataset", name)
        labels = inspect.signature(provider).parameters["labels"]
        assert labels.kind is labels.KEYWORD_ONLY and labels.default is None
        assert provider.__code__ is ssl_speech.fsdd.__code__  # the one wrapper of takes_label_file
        assert "labels" not in inspect.signature(provider.__wrapped__).parameters  # the provider knows nothing of it


def test_hubert_trains_from_an_audio_folder_with_a_label_file(
    clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "folder-mfcc.pt"
    command = _labels_command(capsys, ["--data", "speech.audio_folder", "--root", str(clips), "--option",
                                       "progress=false", "--clusters", "8", "--out", str(out)])  # fmt: skip
    text = shlex.join(command)
    assert f"--recipe data=speech.audio_folder --root {clips} --set data.labels={out}" in text
    assert "--recipe num_clusters=8" in text and "--set data.progress=false" in text
    # a few steps of HuBERT on the folder with its labels: finite loss, masked accuracy measured
    config = ssl_speech.hubert(str(out), steps=8, num_clusters=8, data="speech.audio_folder")
    config["data"].update(root=str(clips), progress=False)
    config["encoder"]["preset"] = "tiny"
    config["objective"]["final_dim"] = 32
    config["train"].update(batch_size=8, lr=1e-3, log_every=1, progress=False, warmup_ratio=0.0)
    config.update(evaluate=[], compare_random_init=False, plots=False)
    result = ssl_core.run(config, out=tmp_path / "run")
    losses = [row["loss"] for row in result.history if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses)
    accuracies = [row["accuracy"] for row in result.history if "accuracy" in row]  # at the masked frames
    assert min(losses[-3:]) < losses[0] or (accuracies and all(0.0 <= a <= 1.0 for a in accuracies))
    assert result.metrics["data"]["info"]["num_clusters"] == 8
    assert result.metrics["data"]["info"]["label_file"] == str(out)
    # the printed command trains too (here shortened: 2 steps of the tiny encoder)
    assert cli_main([*command, *QUICK, "--out", str(tmp_path / "printed")]) == 0
    assert (tmp_path / "printed" / "metrics.json").is_file()
    # iteration 2: the command for a layer of that run carries the run's dataset
    second = tmp_path / "layer.pt"
    command = _labels_command(capsys, ["--from-run", str(tmp_path / "run"), "--layer", "1", "--clusters", "4",
                                       "--out", str(second)])  # fmt: skip
    assert f"--recipe data=speech.audio_folder --root {clips} --set data.labels={second}" in shlex.join(command)
    assert cli_main([*command, *QUICK, "--out", str(tmp_path / "iteration2")]) == 0


def test_printed_commands_run_for_fsdd_and_a_manifest(
    fsdd_root: Path, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fsdd.pt"
    command = _labels_command(capsys, ["--root", str(fsdd_root), "--option", "limit=12", "--option",
                                       "progress=false", "--clusters", "5", "--out", str(out)])  # fmt: skip
    assert "--recipe data=" not in shlex.join(command) and "--set data.limit=12" in shlex.join(command)
    assert cli_main([*command, *QUICK, "--out", str(tmp_path / "fsdd-run")]) == 0
    manifests = tmp_path / "manifest"
    write_manifest(clips, manifests, valid_fraction=0.2, progress=False)
    out = tmp_path / "manifest.pt"
    command = _labels_command(capsys, ["--data", "speech.manifest", "--root", str(manifests), "--option",
                                       "max_sample_size=4000", "--clusters", "6", "--out", str(out)])  # fmt: skip
    assert "--recipe data=speech.manifest" in shlex.join(command) and "data.max_sample_size=4000" in command
    assert cli_main([*command, *QUICK, "--out", str(tmp_path / "manifest-run")]) == 0


def test_task_stage_labels_an_audio_folder_for_the_next_stage(clips: Path, tmp_path: Path) -> None:
    pipeline: dict[str, Any] = {
        "seed": 0,
        "data": {"name": "speech.audio_folder", "root": str(clips), "progress": False},
        "encoder": {"name": "speech.wav2vec2", "preset": "tiny"},
        "views": {"name": "speech.span_mask", "mask_prob": 0.8},
        "train": {"steps": 2, "batch_size": 8, "progress": False},
        "plots": False,
        "stage": [
            {"name": "mfcc-labels", "task": {"name": "speech.hubert_labels", "num_clusters": 6}},
            {
                "name": "hubert",
                "objective": {"name": "speech.hubert", "final_dim": 32},
                "data": {"labels": "${mfcc-labels.labels}"},
                "evaluate": [],
            },
        ],
    }
    result = ssl_core.run(pipeline, out=tmp_path / "stages")
    assert math.isfinite(result.history[-1]["loss"])


def test_a_label_file_of_another_dataset_names_both_counts(fsdd_root: Path, clips: Path, tmp_path: Path) -> None:
    other = save_labels(hubert_labels(fsdd(str(fsdd_root), limit=12, progress=False), num_clusters=4),
                        tmp_path / "fsdd12.pt")  # fmt: skip
    train = len(audio_folder(str(clips), progress=False).train)
    with pytest.raises(ValueError, match=rf"{other.name} has 12 train utterances but the dataset has {train}"):
        audio_folder(str(clips), progress=False, labels=str(other))
    with pytest.raises(ssl_core.ConfigError, match=rf"has 12 train utterances but the dataset has {train}"):
        config = ssl_speech.hubert(str(other), steps=1, data="speech.audio_folder")
        config["data"].update(root=str(clips), progress=False)
        ssl_core.run(config, out=tmp_path / "refused")
    with pytest.raises(ValueError, match="no HuBERT label file at"):
        audio_folder(str(clips), progress=False, labels=str(tmp_path / "missing.pt"))
