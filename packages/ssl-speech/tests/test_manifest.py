"""Manifests (issue 15): fairseq-style .tsv lists of audio files, decoded lazily in DataLoader workers."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ssl_core
from ssl_speech import AudioDataError, manifest, read_manifest, write_manifest

SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DIGITS, SPEAKERS, TAKES = (0, 1), ("george", "jackson", "lucas"), range(10)


@pytest.fixture()
def recordings(fsdd_root: Path, tmp_path: Path) -> Path:
    """60 FSDD files (2 digits x 3 speakers x takes 0-9): takes 0-4 test (30), 5-9 train (30)."""
    target = tmp_path / "recordings"
    target.mkdir()
    for digit in DIGITS:
        for speaker in SPEAKERS:
            for take in TAKES:
                shutil.copy(fsdd_root / f"{digit}_{speaker}_{take}.wav", target)
    return target


@pytest.fixture()
def manifests(recordings: Path, tmp_path: Path) -> Path:
    out = tmp_path / "manifests"
    write_manifest(recordings, out, layout="fsdd", progress=False)
    return out


def pipeline(root: Path, steps: int, **train: Any) -> dict[str, Any]:
    """wav2vec 2.0, tiny encoder, half-second crops, batches of 4, no evaluation."""
    from ssl_speech import wav2vec2

    config = wav2vec2(steps=steps)
    config["data"] = {"name": "speech.manifest", "root": str(root), "max_sample_size": 8000, "target": "digit"}
    config["encoder"]["preset"] = "tiny"
    config["train"].update(
        {"batch_size": 4, "precision": "fp32", "log_every": 1, "progress": False, "num_workers": 2, **train}
    )
    return {**config, "evaluate": [], "plots": False, "compare_random_init": False}


def test_writing_reads_headers_only_and_splits_by_take(recordings: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import soundfile

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("write_manifest decoded audio; it should read headers only")

    monkeypatch.setattr(soundfile, "read", no_decoding)
    summary = write_manifest(recordings, tmp_path / "m", layout="fsdd", progress=False)
    root, train = read_manifest(tmp_path / "m" / "train.tsv")
    _, test = read_manifest(tmp_path / "m" / "test.tsv")
    assert root == recordings.resolve() and summary["splits"] == {"train": 30, "test": 30}
    assert summary["sample_rate"] == 8000 and summary["label_columns"] == ["digit", "speaker"]
    assert all(n == soundfile.info(str(recordings / name)).frames for name, n in train + test)
    assert {int(name.split("_")[2][0]) for name, _ in test} == {0, 1, 2, 3, 4}
    labels = (tmp_path / "m" / "train.labels").read_text().splitlines()
    assert labels[0] == "digit\tspeaker" and labels[1] == f"{train[0][0][0]}\t{train[0][0].split('_')[1]}"


def test_folder_layout_holds_out_a_stable_hashed_fraction(recordings: Path, tmp_path: Path) -> None:
    nested = tmp_path / "nested"
    for path in sorted(recordings.glob("*.wav")):
        (nested / path.name.split("_")[1]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, nested / path.name.split("_")[1])
    first = write_manifest(nested, tmp_path / "a", valid_fraction=0.2, progress=False)
    (nested / "george" / "0_george_0.wav").unlink()  # one file fewer: every other file keeps its side
    write_manifest(nested, tmp_path / "b", valid_fraction=0.2, progress=False)
    assert 0 < first["splits"]["test"] < 30 and first["label_columns"] == ["label"]
    for split in ("train", "test"):
        before = {name for name, _ in read_manifest(tmp_path / "a" / f"{split}.tsv")[1]}
        after = {name for name, _ in read_manifest(tmp_path / "b" / f"{split}.tsv")[1]}
        assert after == before - {"george/0_george_0.wav"}


def test_dataset_decodes_lazily_crops_by_seed_epoch_index(manifests: Path) -> None:
    splits = manifest(str(manifests), max_sample_size=8000, min_sample_size=9000)
    train = splits.train
    assert train.decodes_lazily and splits.num_classes == 2 and splits.info["target"] == "digit"
    assert splits.info["dropped_short"]["train"] > 0  # FSDD clips shorter than 9000 samples at 16 kHz
    full = train.full_lengths()
    assert min(full) >= 9000 and train.lengths() == [min(n, 8000) for n in full]
    item = train[0]
    assert item["x"].shape == (8000,) and item["y"] == item["digit"] == 0
    again = train[0]["x"]
    train.set_epoch(1)
    assert torch.equal(item["x"], again) and not torch.equal(item["x"], train[0]["x"])
    whole = manifest(str(manifests)).train
    assert [int(whole[i]["x"].numel()) for i in range(3)] == whole.lengths()[:3]


def test_wav2vec2_trains_on_a_manifest_with_two_workers(manifests: Path, tmp_path: Path) -> None:
    result = ssl_core.run(pipeline(manifests, steps=3), out=tmp_path / "run")
    assert result.metrics["train"]["steps"] == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["name"] == "speech.manifest"


KILL_SCRIPT = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import ssl_core

class KillAtThree:
    @ssl_core.hookimpl
    def ssl_on_step_end(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGKILL)

hooks = ssl_core.make_plugin_manager(load_entry_points=False)
if sys.argv[3] == "kill":
    hooks.register(KillAtThree())
ssl_core.run(json.loads(sys.argv[1]), out=sys.argv[2], resume=sys.argv[3] == "resume", hooks=hooks)
"""


def test_kill_mid_epoch_with_two_workers_then_resume_is_exact(manifests: Path, tmp_path: Path) -> None:
    script = tmp_path / "kill_script.py"
    script.write_text(KILL_SCRIPT)
    config = json.dumps(pipeline(manifests, steps=6, checkpoint_every=1))

    def launch(out: Path, mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), config, str(out), mode]
        return subprocess.run(command, capture_output=True, text=True, env=SCRIPT_ENV, timeout=300)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = launch(straight, "full")
    assert done.returncode == 0, done.stderr[-2000:]
    assert launch(killed, "kill").returncode == -9
    state = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000003.pt", weights_only=False)
    assert state["epoch"] == 0 and 0 < state["batch_in_epoch"] < 30 // 4  # really mid-epoch
    resumed = launch(killed, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with (straight / "log.csv").open() as a, (killed / "log.csv").open() as b:
        losses = [r["loss"] for r in csv.DictReader(a)]
        assert len(losses) == 6 and losses == [r["loss"] for r in csv.DictReader(b)]
    x = ssl_core.load_checkpoint(straight / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    y = ssl_core.load_checkpoint(killed / "checkpoints" / "step-000006.pt", weights_only=False)["model"]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_corrupt_file_is_skipped_named_and_counted(manifests: Path, recordings: Path, tmp_path: Path) -> None:
    broken = recordings / "1_lucas_7.wav"  # in the train split
    broken.write_bytes(b"RIFF garbage, not a wave file" * 20)
    config = pipeline(manifests, steps=8, num_workers=0)  # 8 steps > one epoch of 7 batches: every item is met
    with pytest.warns(UserWarning, match=r"skipped an item the dataset could not read: .*1_lucas_7\.wav \(cannot"):
        ssl_core.run(config, out=tmp_path / "run")
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_in_training"] >= 1
    assert len(data["skipped_names"]) == 1 and str(broken) in data["skipped_names"][0]


def test_a_length_that_disagrees_with_the_file_names_both(manifests: Path, recordings: Path) -> None:
    tsv = manifests / "train.tsv"
    lines = tsv.read_text().splitlines()
    name, count = lines[1].split("\t")
    tsv.write_text("\n".join([lines[0], f"{name}\t{int(count) + 7}", *lines[2:]]) + "\n")
    with pytest.raises(AudioDataError, match=rf"{name}: the manifest .*train\.tsv \(line 2\) records {int(count) + 7} "
                                             rf"samples but the file decodes to {count}"):  # fmt: skip
        manifest(str(manifests)).train[0]


def test_a_missing_file_is_named(manifests: Path, recordings: Path) -> None:
    splits = manifest(str(manifests))
    name = splits.train.name(3)
    (recordings / name).unlink()
    with pytest.raises(AudioDataError, match=rf"{name} is missing \(line 5 of .*train\.tsv\)"):
        splits.train[3]
    shutil.rmtree(recordings)  # the whole audio root moved: said when the dataset is built
    with pytest.raises(AudioDataError, match=r"is missing; the audio root on the manifest's first line is"):
        manifest(str(manifests))


def test_cli_writes_the_manifests(recordings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssl_core import cli_main

    out = tmp_path / "cli"
    assert cli_main(["speech-manifest", str(recordings), "--out", str(out), "--layout", "fsdd", "--no-progress"]) == 0
    assert "train.tsv (30 files) and test.tsv (30 files)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"train.tsv", "test.tsv", "train.labels", "test.labels", "manifest.json"}
    assert len(read_manifest(out / "test.tsv")[1]) == 30


def test_hubert_labels_follow_the_rows_and_the_crops(manifests: Path, tmp_path: Path) -> None:
    from ssl_speech import hubert_labels, save_labels

    splits = manifest(str(manifests), max_sample_size=8000)
    labels = hubert_labels(splits, num_clusters=8)  # made on whole files, though the dataset crops
    whole = manifest(str(manifests)).train
    assert [len(t) for t in labels["train"]] == [(n - 400) // 320 + 1 for n in whole.lengths()]
    path = save_labels(labels, tmp_path / "labels.pt")
    cropped = manifest(str(manifests), max_sample_size=8000, labels=str(path)).train
    index = max(range(len(whole)), key=lambda i: whole.lengths()[i])  # a file longer than the crop
    item, full = cropped[index], whole[index]["x"]
    start = next(s for s in range(0, full.numel() - 8000 + 1, 320) if torch.equal(full[s : s + 8000], item["x"]))
    assert torch.equal(item["targets"], labels["train"][index][start // 320 : start // 320 + 24].long())


def test_librispeech_layout_takes_the_train_subsets_and_labels_speakers(recordings: Path, tmp_path: Path) -> None:
    import soundfile

    corpus = tmp_path / "data" / "LibriSpeech"
    for i, path in enumerate(sorted(recordings.glob("*.wav"))[:12]):
        subset, speaker = ("train-clean-100", 19 + i % 2) if i < 10 else ("dev-clean", 84)
        chapter = corpus / subset / str(speaker) / "198"
        chapter.mkdir(parents=True, exist_ok=True)
        data, rate = soundfile.read(str(path))
        soundfile.write(str(chapter / f"{speaker}-198-{i:04d}.flac"), data, rate)
    summary = write_manifest(
        tmp_path / "data", tmp_path / "ls", layout="librispeech", valid_fraction=0.3, progress=False
    )
    assert summary["splits"]["train"] + summary["splits"]["test"] == 10  # dev-clean left out by default
    assert summary["label_columns"] == ["speaker", "chapter"]
    splits = manifest(str(tmp_path / "ls"), target="speaker")
    assert splits.num_classes == 2 and {splits.train[i]["speaker"] for i in range(len(splits.train))} <= {0, 1}
    assert read_manifest(tmp_path / "ls" / "train.tsv")[0] == corpus.resolve()
