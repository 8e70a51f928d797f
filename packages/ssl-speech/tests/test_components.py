"""Speech data (decoding, bad files, FSDD), the wav2vec 2.0 encoder and the utterance probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from ssl_core.testing import DatasetConformance, EncoderConformance, EvaluatorConformance, ViewGeneratorConformance
from ssl_speech import (
    AudioDataError,
    AudioMultiCropViews,
    MFCCEncoder,
    UtteranceProbeEvaluator,
    Wav2Vec2Encoder,
    WaveformFrontend,
    audio_folder,
    collate_audio,
    download_fsdd,
    fsdd,
    hubert_labels_task,
    librispeech,
    load_audio,
)


def waves_batch(seconds: tuple[float, ...] = (0.5, 0.3)) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    return collate_audio([{"x": torch.randn(int(16000 * s), generator=g), "y": i % 2} for i, s in enumerate(seconds)])


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


# ---------------------------------------------------------------- decoding and bad input


def test_stereo_8k_is_downmixed_and_resampled(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    soundfile.write(path, tone(0.5, 8000, channels=2), 8000)
    wave, rate = load_audio(path, 16000)
    assert rate == 8000 and wave.ndim == 1 and wave.numel() == 8000


def test_corrupt_and_empty_files_name_themselves(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(AudioDataError, match=r"corrupt\.wav: cannot decode"):
        load_audio(corrupt)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDataError, match=r"empty\.wav: the file holds no audio"):
        load_audio(empty)


def test_folder_skips_bad_files_with_warnings_and_counts_them(tmp_path: Path) -> None:
    for label in ("yes", "no"):
        (tmp_path / label).mkdir()
        for i in range(3):
            soundfile.write(tmp_path / label / f"{i}.wav", tone(0.3, 16000), 16000)
    (tmp_path / "yes" / "broken.wav").write_bytes(b"garbage")
    soundfile.write(tmp_path / "no" / "short.wav", tone(0.01, 16000), 16000)  # 160 samples < 400
    with pytest.warns(UserWarning) as caught:
        splits = audio_folder(str(tmp_path), test_fraction=0.34, progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.wav" in messages and "short.wav" in messages and "receptive field" in messages
    assert splits.info["skipped_files"] == 2 and splits.num_classes == 2
    assert len(splits.train) + len(splits.test) == 6


def test_missing_folder_and_no_audio_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AudioDataError, match="not a folder"):
        audio_folder(str(tmp_path / "nope"))
    with pytest.raises(AudioDataError, match="no audio files"):
        audio_folder(str(tmp_path))


def test_collate_pads_and_marks_padding() -> None:
    batch = waves_batch((0.5, 0.25))
    assert batch["x"].shape == (2, 8000) and batch["lengths"].tolist() == [8000, 4000]
    assert batch["padding_mask"][1, 4000:].all() and not batch["padding_mask"][1, :4000].any()


# ---------------------------------------------------------------- FSDD


def test_fsdd_split_and_labels(fsdd_root: Path) -> None:
    splits = fsdd(str(fsdd_root), limit=60, progress=False)
    assert splits.info["num_speakers"] == 6 and splits.num_classes == 10
    test_files = [Path(f).stem for f in splits.test.files]  # type: ignore[attr-defined]
    assert all(int(stem.split("_")[2]) < 5 for stem in test_files)
    sample = splits.train[0]
    assert sample["x"].dtype == torch.float32 and splits.info["resampled_from"] == [8000]
    assert sample["y"] == sample["digit"]
    speaker = fsdd(str(fsdd_root), target="speaker", limit=5, progress=False)
    assert speaker.num_classes == 6 and speaker.train[0]["y"] == speaker.train[0]["speaker"]


def test_fsdd_train_takes_keeps_a_small_corpus_with_every_digit_and_speaker(fsdd_root: Path) -> None:
    splits = fsdd(str(fsdd_root), train_takes=2, progress=False)
    stems = [Path(f).stem.split("_") for f in splits.train.files]  # type: ignore[attr-defined]
    assert len(stems) == 120 and {int(take) for _, _, take in stems} == {5, 6}
    assert len({digit for digit, _, _ in stems}) == 10 and len({speaker for _, speaker, _ in stems}) == 6
    assert len(splits.test) == 300  # the test split is untouched
    with pytest.raises(AudioDataError, match="train_takes"):
        fsdd(str(fsdd_root), train_takes=0, progress=False)


def test_fsdd_target_in_info_does_not_choose_the_probe_target(fsdd_root: Path) -> None:
    # FSDD's info["target"] describes the dataset's y; the probe's target is the pipeline file's
    # choice, so it is not a declared data_param and keeps its default ("y") when the file is silent.
    from ssl_core import build_pipeline, load_config

    cfg = load_config({
        "data": {"name": "speech.fsdd", "target": "speaker", "limit": 10, "progress": False},
        "encoder": {"name": "speech.wav2vec2", "preset": "tiny"},
        "views": {"name": "speech.span_mask"},
        "objective": {"name": "speech.wav2vec2"},
        "evaluate": [{"name": "speech.utterance_probe"}],
    })  # fmt: skip
    built = build_pipeline(cfg, root=str(fsdd_root))
    assert built.splits.info["target"] == "speaker"
    (probe,) = built.evaluators.values()
    assert probe.target == "y"


class TestFSDDConformance(DatasetConformance):
    root = str((Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fsdd" / "recordings").resolve())

    def make_provider(self) -> Any:
        return fsdd

    def provider_options(self) -> dict[str, Any]:
        if not Path(self.root).is_dir():  # type: ignore[arg-type]
            pytest.skip(f"FSDD recordings are not at {self.root} (the shared data folder is absent)")
        return {"limit": 8, "progress": False}


# ---------------------------------------------------------------- encoder


class TestWaveformEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return Wav2Vec2Encoder(preset="tiny")

    def make_batch(self) -> dict[str, Any]:
        return waves_batch()


class TestFbankEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return Wav2Vec2Encoder(preset="tiny", frontend="fbank")

    def make_batch(self) -> dict[str, Any]:
        return waves_batch()


def test_padding_does_not_change_an_utterance() -> None:
    enc = Wav2Vec2Encoder(preset="tiny").eval()
    alone = enc(collate_audio([{"x": torch.randn(6400, generator=torch.Generator().manual_seed(1))}]))
    wave = torch.randn(6400, generator=torch.Generator().manual_seed(1))
    padded = enc(collate_audio([{"x": wave}, {"x": torch.randn(16000)}]))
    frames = alone.tokens.shape[1]
    assert torch.allclose(alone.pooled[0], padded.pooled[0], atol=1e-4)
    assert torch.allclose(alone.tokens[0], padded.tokens[0, :frames], atol=1e-4)


def test_clip_shorter_than_receptive_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="shorter than the encoder's receptive field"):
        Wav2Vec2Encoder(preset="tiny")({"x": torch.randn(1, 300)})


@pytest.mark.parametrize("samples", [400, 401, 6399, 6400, 9001])
def test_row_layout_cnn_matches_torchaudio_in_values_and_gradients(samples: int) -> None:
    torch.manual_seed(0)
    fast, reference = WaveformFrontend(row_layout=True), WaveformFrontend(row_layout=False)
    reference.load_state_dict(fast.state_dict())
    x, lengths = torch.randn(3, samples), torch.tensor([samples, samples - 1, max(samples // 2, 400)])
    ours, our_lengths = fast(x, lengths)
    theirs, their_lengths = reference(x, lengths)
    assert ours.shape == theirs.shape and torch.equal(our_lengths, their_lengths)  # type: ignore[arg-type]
    assert torch.allclose(ours, theirs, atol=1e-4)
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-3 * b.grad.abs().max().item()), name  # type: ignore[arg-type]


def test_row_layout_cnn_under_bf16_autocast_tracks_fp32() -> None:
    torch.manual_seed(0)
    frontend, x = WaveformFrontend(row_layout=True), torch.randn(2, 8000)
    exact, _ = frontend(x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = frontend(x, None)
        low.float().pow(2).mean().backward()
    assert (low.float() - exact).abs().max() < 0.1 * exact.abs().max()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in frontend.parameters())


def test_row_layout_refuses_group_norm() -> None:
    with pytest.raises(ValueError, match="row_layout needs norm_mode='layer_norm'"):
        WaveformFrontend("group_norm", row_layout=True)


def test_waveform_frontend_insists_on_16k() -> None:
    with pytest.raises(ValueError, match="expects 16 kHz"):
        Wav2Vec2Encoder(preset="tiny", sample_rate=8000)


# ---------------------------------------------------------------- probe


class TestUtteranceProbeConformance(EvaluatorConformance):
    def make_evaluator(self) -> UtteranceProbeEvaluator:
        return UtteranceProbeEvaluator(epochs=5, hidden_dim=16)

    def make_encoder(self) -> nn.Module:
        return Wav2Vec2Encoder(preset="tiny")

    def make_splits(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [waves_batch((0.3, 0.4, 0.35, 0.3))], [waves_batch((0.3, 0.3))]


def test_probe_reads_the_chosen_label_column() -> None:
    batch = {**waves_batch((0.3, 0.3)), "speaker": torch.tensor([1, 0])}
    metrics = UtteranceProbeEvaluator(target="speaker", epochs=2, hidden_dim=8)(
        Wav2Vec2Encoder(preset="tiny"), [batch], [batch]
    )
    assert "accuracy" in metrics and "layer_weight_1" in metrics
    with pytest.raises(ValueError, match="no 'digit' labels"):
        UtteranceProbeEvaluator(target="digit")(Wav2Vec2Encoder(preset="tiny"), [batch], [batch])


class TestMFCCEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return MFCCEncoder()

    def test_gradients_reach_parameters(self) -> None:
        pytest.skip("speech.mfcc is a parameter-free baseline: nothing to train")

    def make_batch(self) -> dict[str, Any]:
        return waves_batch()


def test_mfcc_encoder_frames_follow_each_utterance_length() -> None:
    batch = waves_batch((0.5, 0.3))
    out = MFCCEncoder()(batch)
    assert out.tokens.shape == (2, 24, 39) and int((~out.padding_mask[1]).sum()) == 14  # type: ignore[index]
    alone = MFCCEncoder()(collate_audio([{"x": batch["x"][1, :4800]}]))
    assert torch.allclose(alone.pooled[0], out.pooled[1], atol=1e-5)


def fake_librispeech(root: Path, subset: str = "dev-clean", speakers: int = 2, utterances: int = 4) -> None:
    """LibriSpeech's layout: <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + .trans.txt."""
    for spk in range(speakers):
        chapter = root / "LibriSpeech" / subset / str(100 + spk) / "7"
        chapter.mkdir(parents=True)
        lines = []
        for utt in range(utterances):
            name = f"{100 + spk}-7-{utt:04d}"
            soundfile.write(chapter / f"{name}.flac", tone(0.2 + 0.05 * utt, 16000), 16000)
            lines.append(f"{name} WORDS OF UTTERANCE {utt}")
        (chapter / f"{100 + spk}-7.trans.txt").write_text("\n".join(lines) + "\n")


def test_librispeech_reads_torchaudio_layout_and_splits_per_speaker(tmp_path: Path) -> None:
    fake_librispeech(tmp_path)
    splits = librispeech(str(tmp_path), subset="dev-clean", test_fraction=0.25, progress=False)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (6, 2, 2)
    assert sorted(splits.test[i]["speaker"] for i in range(2)) == [0, 1]  # every speaker on both sides
    batch = collate_audio([splits.train[0], splits.train[1]])
    assert batch["transcript"][0].startswith("WORDS OF UTTERANCE") and batch["chapter"].tolist() == [7, 7]
    with pytest.raises(AudioDataError, match="download = true"):
        librispeech(str(tmp_path), subset="test-clean")
    with pytest.raises(AudioDataError, match="unknown LibriSpeech subset"):
        librispeech(str(tmp_path), subset="train-clean-99")


def test_fsdd_downloader_extracts_recordings_from_an_archive(fsdd_root: Path, tmp_path: Path) -> None:
    """The real downloader, fed a local copy of FSDD's GitHub archive through a file:// URL."""
    import zipfile

    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(fsdd_root.glob("*_george_*.wav"))[:12] + sorted(fsdd_root.glob("*_theo_*.wav"))[:12]:
            zipped.write(path, f"free-spoken-digit-dataset-master/recordings/{path.name}")
        zipped.writestr("free-spoken-digit-dataset-master/README.md", "FSDD")
    folder = download_fsdd(tmp_path / "data", url=archive.as_uri())
    assert len(list(folder.glob("*.wav"))) == 24 and not list(folder.glob("*.part"))
    splits = fsdd(str(tmp_path / "data"), progress=False)
    assert len(splits.train) + len(splits.test) == 24 and splits.info["num_speakers"] == 2
    with pytest.raises(AudioDataError, match="could not download FSDD"):
        download_fsdd(tmp_path / "other", url=(tmp_path / "missing.zip").as_uri())
    with pytest.raises(AudioDataError, match="download = true"):
        fsdd(str(tmp_path / "empty"))


class TestAudioMultiCropConformance(ViewGeneratorConformance):
    def make_views(self) -> AudioMultiCropViews:
        return AudioMultiCropViews(global_seconds=0.25, local_seconds=0.1)

    def make_batch(self) -> dict[str, Any]:
        return collate_audio([{"x": torch.randn(8000), "y": 0}, {"x": torch.randn(3000), "y": 1}])


def test_multi_crop_cuts_inside_each_utterance_and_marks_short_ones() -> None:
    wave = torch.arange(1, 8001, dtype=torch.float32)  # a ramp: a crop's values say where it came from
    batch = collate_audio([{"x": wave}, {"x": wave[:2000]}])
    views = AudioMultiCropViews(num_local=3, global_seconds=0.25, local_seconds=0.1, gain_db=0.0, noise_prob=0.0)
    out = views(batch, torch.Generator().manual_seed(0))
    assert len(out) == views.num_views == 5 and out.extras["num_global"] == 2
    for crop in out.batches:
        x, lengths = crop["x"], crop["lengths"]
        size = x.shape[1]
        assert lengths.tolist() == [size, min(size, 2000)]
        assert torch.all(x[0, 1:] - x[0, :-1] == 1)  # one contiguous stretch of the first utterance
        assert torch.all(x[1, lengths[1] :] == 0) and x[1, : lengths[1]].max() <= 2000  # short one: whole, padded
    again = views(batch, torch.Generator().manual_seed(0))
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(out.batches, again.batches, strict=True))


def test_multi_crop_gain_and_noise_stay_within_their_ranges() -> None:
    batch = collate_audio([{"x": torch.ones(8000)}] * 64)
    loud = AudioMultiCropViews(num_local=0, global_seconds=0.25, gain_db=6.0, noise_prob=0.0)
    x = loud(batch, torch.Generator().manual_seed(1)).batches[0]["x"]
    assert x.min() >= 10 ** (-6 / 20) - 1e-6 and x.max() <= 10 ** (6 / 20) + 1e-6
    noisy = AudioMultiCropViews(num_local=0, global_seconds=0.25, gain_db=0.0, noise_prob=1.0, snr_db=(10.0, 10.0))
    y = noisy(batch, torch.Generator().manual_seed(1)).batches[0]["x"]
    snr = 10 * torch.log10(1.0 / (y - 1.0).square().mean())
    assert abs(float(snr) - 10.0) < 0.5
    with pytest.raises(ValueError, match="local_seconds <= global_seconds"):
        AudioMultiCropViews(global_seconds=0.1, local_seconds=0.2)
    with pytest.raises(ValueError, match=r"waveforms \[batch, samples\]"):
        loud({"x": torch.zeros(2, 3, 4)}, torch.Generator())


def test_frames_frontend_takes_time_series_with_their_padding() -> None:
    encoder = Wav2Vec2Encoder(preset="tiny", frontend="frames", in_channels=3).eval()
    assert encoder.modality == "any" and Wav2Vec2Encoder.modality == "audio"
    x = torch.randn(2, 40, 3)
    padding = torch.zeros(2, 40, dtype=torch.bool)
    padding[1, 30:] = True
    out = encoder({"x": x, "padding_mask": padding}, token_mask=torch.zeros(2, 40, dtype=torch.bool))
    assert out.tokens.shape == (2, 40, 64) and torch.equal(out.padding_mask, padding)
    alone = encoder({"x": x[1:, :30]})  # the padded series gives what it gives alone
    assert torch.allclose(out.pooled[1], alone.pooled[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"needs batch\['x'\] as \[B, T, 3\]"):
        encoder({"x": torch.randn(2, 40)})
    with pytest.raises(ValueError, match="needs in_channels"):
        Wav2Vec2Encoder(preset="tiny", frontend="frames")


def test_hubert_labels_task_writes_labels_for_the_next_stage(fsdd_root: Path, tmp_path: Path) -> None:
    splits = fsdd(str(fsdd_root), limit=20, progress=False)
    made = hubert_labels_task(splits, tmp_path, source="mfcc", num_clusters=4)
    assert made["labels"] == str(tmp_path / "labels.pt") and made["num_clusters"] == 4
    attached = fsdd(str(fsdd_root), limit=20, progress=False, labels=made["labels"])
    assert attached.info["num_clusters"] == 4 and "targets" in attached.train[0]
    with pytest.raises(ValueError, match="put a pretrain stage before this one"):
        hubert_labels_task(splits, tmp_path, source="layer")
