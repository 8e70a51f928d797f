"""ssl export (issue 16), speech.wav2vec2: ``torchaudio`` and ``hf`` exports load in plain torchaudio / transformers."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import ssl_core
from ssl_core import ExportError, ExportSource, export
from ssl_core.functional import masked_mean
from ssl_speech import collate_audio, fsdd, hubert_labels, save_labels
from ssl_speech._export import HFExporter

TOLERANCE = 1e-5


def _tiny_run(root: Path, out: Path, objective: dict[str, Any], **encoder: Any) -> Path:
    labels = objective.pop("labels", None)
    config = {
        "seed": 0,
        "data": {"name": "speech.fsdd", "root": str(root), "limit": 12, "progress": False,
                 **({"labels": labels} if labels else {})},
        "encoder": {"name": "speech.wav2vec2", "preset": "tiny", **encoder},
        "views": {"name": "speech.span_mask", "mask_prob": 0.65},
        "objective": objective,
        "train": {"steps": 2, "batch_size": 4, "lr": 1e-3, "progress": False},
        "evaluate": [],
        "plots": False,
        "compare_random_init": False,
    }  # fmt: skip
    ssl_core.run(config, out=out)
    return out


@pytest.fixture(scope="module")
def wav2vec2_run(fsdd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wav2vec 2.0 with the layer-normalised CNN (the CPU row-layout path)."""
    out = tmp_path_factory.mktemp("w2v") / "run"
    return _tiny_run(fsdd_root, out, {"name": "speech.wav2vec2", "num_entries": 16, "final_dim": 32})


@pytest.fixture(scope="module")
def hubert_run(fsdd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HuBERT with BASE's group-normalised CNN."""
    folder = tmp_path_factory.mktemp("hubert")
    labels = save_labels(hubert_labels(fsdd(str(fsdd_root), limit=12, progress=False), num_clusters=5),
                         folder / "labels.pt")  # fmt: skip
    objective = {"name": "speech.hubert", "final_dim": 32, "labels": str(labels)}
    return _tiny_run(fsdd_root, folder / "run", objective, norm_mode="group_norm")


@pytest.fixture(scope="module")
def fbank_run(fsdd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fbank") / "run"
    return _tiny_run(fsdd_root, out, {"name": "speech.wav2vec2", "num_entries": 16, "final_dim": 32},
                     frontend="fbank")  # fmt: skip


def _runs(request: pytest.FixtureRequest, name: str) -> Path:
    path: Path = request.getfixturevalue(name)
    return path


def _three_test_utterances(run: Path) -> tuple[dict[str, Any], ssl_core.Features]:
    """Another batch than the export checked itself on (3 utterances, padded), and our encoder's output."""
    loaded = ssl_core.load_encoder(run)
    batch = collate_audio([loaded.splits.test[i] for i in (2, 3, 4)])
    assert int(batch["padding_mask"].sum()) > 0
    with torch.no_grad():
        features: ssl_core.Features = loaded.encoder.eval()(batch)
    return batch, features


def _largest_difference(features: ssl_core.Features, layers: Sequence[Tensor], frames: Tensor) -> float:
    padding = torch.arange(layers[-1].shape[1]).unsqueeze(0) >= frames.unsqueeze(1)
    assert features.layers is not None and len(layers) == len(features.layers)
    pairs = [(features.pooled, masked_mean(layers[-1], padding)), *zip(features.layers, layers, strict=True)]
    return max(float((ours - theirs).abs().max()) for ours, theirs in pairs)


@pytest.mark.parametrize("run_name", ["wav2vec2_run", "hubert_run"])
def test_torchaudio_export_rebuilds_with_wav2vec2_model(
    run_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import torchaudio
    from safetensors.torch import load_file

    run = _runs(request, run_name)
    result = export(run, "torchaudio", tmp_path / "ta")
    assert result.max_abs_diff <= TOLERANCE and result.files == ["model.safetensors", "wav2vec2_model.json"]
    kwargs = json.loads((tmp_path / "ta" / "wav2vec2_model.json").read_text())
    assert kwargs["extractor_mode"] == ("group_norm" if run_name == "hubert_run" else "layer_norm")
    model = torchaudio.models.wav2vec2_model(**kwargs)
    model.load_state_dict(load_file(str(tmp_path / "ta" / "model.safetensors")))
    batch, features = _three_test_utterances(run)
    with torch.no_grad():
        layers, frames = model.eval().extract_features(batch["x"], batch["lengths"])
    assert frames is not None
    assert _largest_difference(features, layers, frames) <= TOLERANCE


HF_CLASSES = [("wav2vec2_run", "Wav2Vec2Model"), ("hubert_run", "HubertModel")]


@pytest.mark.parametrize(("run_name", "model_class"), HF_CLASSES)
def test_hf_export_loads_in_transformers_and_matches(
    run_name: str, model_class: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers", reason="the hf export needs transformers (ssl-speech[hf])")

    run = _runs(request, run_name)
    result = export(run, "hf", tmp_path / "hf")
    assert result.max_abs_diff <= TOLERANCE and result.details["model_class"] == model_class
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(result.files)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "hf")
    model, info = getattr(transformers, model_class).from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    config = model.config
    assert (config.feat_extract_norm, config.do_stable_layer_norm, config.conv_bias) == (
        "group" if run_name == "hubert_run" else "layer", False, False)  # fmt: skip
    assert (config.hidden_size, config.num_hidden_layers, config.num_conv_pos_embeddings) == (64, 2, 16)
    assert (extractor.sampling_rate, extractor.do_normalize, extractor.return_attention_mask) == (16000, False, True)

    batch, features = _three_test_utterances(run)
    waves = [row[:n].numpy() for row, n in zip(batch["x"], batch["lengths"].tolist(), strict=True)]
    inputs = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**inputs, output_hidden_states=True).hidden_states
    assert len(hidden) == 3  # the transformer's input, then one per layer
    frames = ssl_core.load_encoder(run).encoder.frontend.frames(inputs["attention_mask"].sum(-1))
    assert _largest_difference(features, hidden[1:], frames) <= TOLERANCE


def test_fbank_run_is_told_which_formats_fit(fbank_run: Path, tmp_path: Path) -> None:
    for fmt in ("hf", "torchaudio"):
        why = rf"\(speech\.{fmt}: {fmt} takes the waveform front-end; this run uses fbank: use onnx or safetensors\)"
        with pytest.raises(ExportError, match=rf"format '{fmt}' does not fit encoder 'speech.wav2vec2' {why}"):
            export(fbank_run, fmt, tmp_path / fmt)
    loaded = ssl_core.load_encoder(fbank_run)
    fits = ssl_core.export_formats(ExportSource(loaded.encoder, loaded.config, loaded.splits))
    assert fits["safetensors"] is None and fits["hf"] is not None and fits["torchaudio"] is not None


def test_hf_without_transformers_names_the_extra(
    wav2vec2_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = ssl_core.load_encoder(wav2vec2_run)
    source = ExportSource(loaded.encoder, loaded.config, loaded.splits)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    assert HFExporter().supports(source) == "the hf export needs transformers: pip install 'ssl-speech[hf]'"
    with pytest.raises(ExportError, match=r"^the hf export needs transformers: pip install 'ssl-speech\[hf\]'$"):
        HFExporter().export(source, tmp_path / "hf")
