"""wav2vec 2.0 and HuBERT: masking, negatives, quantiser, labels, and a short pipeline run on FSDD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import ssl_core
import ssl_speech
from ssl_core import Views, cli_main
from ssl_core.testing import ObjectiveConformance, ViewGeneratorConformance
from ssl_speech import (
    HuBERTObjective,
    SpanMaskViews,
    Wav2Vec2Encoder,
    Wav2Vec2Objective,
    attach_labels,
    collate_audio,
    fsdd,
    functional,
    hubert_labels,
    mfcc_features,
    save_labels,
)


def waves(lengths: tuple[int, ...] = (16000, 9000), seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return collate_audio([{"x": torch.randn(n, generator=g)} for n in lengths])


def test_span_mask_covers_about_half_and_never_padding() -> None:
    padding = torch.zeros(64, 500, dtype=torch.bool)
    padding[::2, 300:] = True
    mask = functional.span_mask(padding, 0.65, 10, generator=torch.Generator().manual_seed(0))
    assert not (mask & padding).any()
    fraction = float(mask[1::2].float().mean())
    assert 0.44 < fraction < 0.54  # wav2vec 2.0 reports about 49% of frames masked
    again = functional.span_mask(padding, 0.65, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_span_mask_on_short_utterances_keeps_min_masks() -> None:
    padding = torch.zeros(3, 12, dtype=torch.bool)
    mask = functional.span_mask(padding, 0.05, 4, generator=torch.Generator().manual_seed(1), min_masks=2)
    assert (mask.sum(dim=1) >= 4).all()


def test_negatives_come_from_the_same_utterance_and_never_the_frame() -> None:
    utterance = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    negatives = functional.sample_negatives(utterance, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(utterance[negatives], utterance.unsqueeze(1).expand(-1, 50))
    assert (negatives != torch.arange(10).unsqueeze(1)).all()
    with pytest.raises(ValueError, match="at least two masked frames"):
        functional.sample_negatives(torch.tensor([0, 1, 1]), 2, generator=torch.Generator())


def test_duplicate_negatives_are_excluded_from_the_softmax() -> None:
    positives = torch.eye(3)
    negatives = torch.stack([positives, positives.roll(1, 0)], dim=1)  # first negative duplicates the positive
    logits = functional.infonce_logits(positives, positives, negatives, 0.1)
    assert torch.isinf(logits[:, 1]).all() and torch.isfinite(logits[:, [0, 2]]).all()


def test_gumbel_temperature_decays_to_its_floor() -> None:
    objective = Wav2Vec2Objective(embed_dim=64, num_entries=8, final_dim=16, gumbel_decay=0.9)
    objective.on_step_end(1, 100)
    assert objective.tau == pytest.approx(1.8)
    objective.on_step_end(1000, 1000)
    assert objective.tau == 0.5


class TestSpanMaskViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> SpanMaskViews:
        return SpanMaskViews()

    def make_batch(self) -> dict[str, Any]:
        return waves()


class TestWav2Vec2ObjectiveConformance(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return Wav2Vec2Objective(embed_dim=embed_dim, num_entries=16, final_dim=32, num_negatives=10)

    def make_encoder(self) -> nn.Module:
        return Wav2Vec2Encoder(preset="tiny")

    def make_views(self) -> Views:
        return SpanMaskViews()(waves(), torch.Generator().manual_seed(0))


def _with_targets(batch: dict[str, Any], clusters: int = 8) -> dict[str, Any]:
    frames = [(int(n) - 400) // 320 + 1 for n in batch["lengths"]]
    targets = [torch.arange(f) % clusters for f in frames]
    return {**batch, "targets": torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)}


class TestHuBERTObjectiveConformance(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return HuBERTObjective(embed_dim=embed_dim, num_clusters=8, final_dim=32)

    def make_encoder(self) -> nn.Module:
        return Wav2Vec2Encoder(preset="tiny")

    def make_views(self) -> Views:
        return SpanMaskViews(mask_prob=0.8)(_with_targets(waves()), torch.Generator().manual_seed(0))


def test_objectives_explain_missing_pieces() -> None:
    encoder = Wav2Vec2Encoder(preset="tiny")
    plain = Views(batches=[waves()])
    with pytest.raises(ValueError, match=r"speech\.span_mask"):
        Wav2Vec2Objective(embed_dim=64)(encoder, plain)
    views = SpanMaskViews()(waves(), torch.Generator())
    with pytest.raises(ValueError, match="hubert_labels"):
        HuBERTObjective(embed_dim=64, num_clusters=8)(encoder, views)


def test_label_frame_mismatch_names_the_file_and_both_lengths() -> None:
    batch = _with_targets(waves())
    batch["targets"] = batch["targets"][:, :30]  # utterance 0 has 49 frames
    batch["file"] = ["a.wav", "b.wav"]
    views = SpanMaskViews(mask_prob=0.8)(batch, torch.Generator())
    with pytest.raises(ValueError, match=r"utterance a\.wav: 30 labels vs 49 frames"):
        HuBERTObjective(embed_dim=64, num_clusters=8)(Wav2Vec2Encoder(preset="tiny"), views)


@pytest.mark.parametrize("samples", [400, 4000, 11916, 16000])
def test_mfcc_frames_match_the_waveform_encoder(samples: int) -> None:
    encoder = Wav2Vec2Encoder(preset="tiny").eval()
    frames = encoder({"x": torch.randn(1, samples)}).tokens.shape[1]
    assert mfcc_features(torch.randn(samples)).shape == (frames, 39)


def test_hubert_labels_round_trip_and_pipeline_run(fsdd_root: Path, tmp_path: Path) -> None:
    splits = fsdd(str(fsdd_root), limit=24, progress=False)
    labels = hubert_labels(splits, num_clusters=6)
    assert len(labels["train"]) == 24 and int(max(lab.max() for lab in labels["train"])) < 6
    path = save_labels(labels, tmp_path / "labels.pt")
    with pytest.raises(ValueError, match="label file has 24 train utterances but the dataset has 10"):
        attach_labels(fsdd(str(fsdd_root), limit=10, progress=False), labels)
    config = {
        "seed": 0,
        "data": {"name": "speech.fsdd", "root": str(fsdd_root), "limit": 24, "labels": str(path), "progress": False},
        "encoder": {"name": "speech.wav2vec2", "preset": "tiny"},
        "views": {"name": "speech.span_mask", "mask_prob": 0.8},
        "objective": {"name": "speech.hubert", "final_dim": 32},
        "train": {"steps": 6, "batch_size": 8, "lr": 1e-3, "log_every": 1, "progress": False},
        "evaluate": [{"name": "speech.utterance_probe", "epochs": 3, "hidden_dim": 16}],
        "plots": False,
    }
    result = ssl_core.run(config)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "accuracy" in result.metrics["evaluations"]["speech.utterance_probe"]


def test_cross_sample_negatives_come_from_other_utterances_too() -> None:
    encoder = Wav2Vec2Encoder(preset="tiny")
    views = SpanMaskViews()(waves(), torch.Generator().manual_seed(0))
    cross_only = Wav2Vec2Objective(
        embed_dim=64, num_entries=16, final_dim=32, num_negatives=0, cross_sample_negatives=8
    )
    out = cross_only(encoder, views)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and encoder.mask_embedding.grad is not None
    utterance = torch.tensor([0, 0, 0, 1, 1, 1])
    pooled = functional.sample_negatives(torch.zeros_like(utterance), 50, generator=torch.Generator().manual_seed(0))
    assert set(pooled[0].tolist()) & {3, 4, 5}  # the pool spans the batch
    with pytest.raises(ValueError, match="at least one negative"):
        Wav2Vec2Objective(embed_dim=64, num_negatives=0)


def test_hubert_labels_command_makes_a_label_file_a_run_can_use(fsdd_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mfcc.pt"
    argv = ["hubert-labels", "--root", str(fsdd_root), "--option", "limit=16", "--option", "progress=false",
            "--clusters", "5", "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    labels = torch.load(out, weights_only=False)
    assert labels["num_clusters"] == 5 and len(labels["train"]) == 16 and labels["source"] == "mfcc"
    # the dataset with these labels feeds HuBERT; iteration 2 clusters a layer of that run
    run_dir = tmp_path / "h1"
    config = ssl_speech.hubert(str(out), steps=2)
    config["data"].update(root=str(fsdd_root), limit=16, progress=False)
    config["encoder"]["preset"] = "tiny"
    config["objective"].update(num_clusters=5, final_dim=32)
    config["train"].update(batch_size=8, progress=False)
    config.update(evaluate=[], compare_random_init=False, plots=False)
    ssl_core.run(config, out=run_dir)
    second = tmp_path / "layer.pt"
    argv = ["hubert-labels", "--from-run", str(run_dir), "--layer", "2", "--clusters", "4", "--out", str(second)]
    assert cli_main(argv) == 0
    assert torch.load(second, weights_only=False)["layer"] == 2
    assert cli_main(["hubert-labels", "--source", "layer", "--out", str(second)]) == 2  # says: pass --from-run


def test_recipes_name_registered_components() -> None:
    registry = ssl_core.default_registry()
    for recipe in (ssl_speech.wav2vec2(), ssl_speech.hubert("labels.pt")):
        for kind, key in (("dataset", "data"), ("encoder", "encoder"), ("views", "views"), ("objective", "objective")):
            registry.get(kind, recipe[key]["name"])
        assert [e["target"] for e in recipe["evaluate"]] == ["digit", "speaker"]
        ssl_core.load_config(recipe)  # a valid pipeline


def test_recipe_warm_up_follows_train_steps() -> None:
    for recipe in (ssl_speech.wav2vec2(steps=500), ssl_speech.hubert("labels.pt", steps=500)):
        assert ssl_core.load_config(recipe).train.total_warmup_steps() == 50
        shorter = ssl_core.load_config(recipe, ["train.steps=40"])
        assert shorter.train.total_warmup_steps() == 4  # 10% of the new length, not a stale 50
    assert ssl_speech.hubert(num_clusters=500)["objective"]["num_clusters"] == 500
    with pytest.raises(ValueError, match="steps"):
        ssl_speech.wav2vec2(steps=0)


def test_wav2vec2_gumbel_temperature_is_restored_with_the_state_dict() -> None:
    # issue 15: a resumed run went back to gumbel_start; state dicts from before gumbel_step still load
    from ssl_speech import Wav2Vec2Objective

    trained, fresh = Wav2Vec2Objective(embed_dim=16, feature_dim=8), Wav2Vec2Objective(embed_dim=16, feature_dim=8)
    trained.on_step_end(1000, 2000)
    fresh.load_state_dict(trained.state_dict())
    assert fresh.tau == trained.tau < 2.0
    old = {k: v for k, v in trained.state_dict().items() if k != "gumbel_step"}
    fresh.load_state_dict(old)
    assert fresh.tau == 2.0


def test_wav2vec2_health_reports_the_last_steps_codebook_and_contrastive_scalars() -> None:
    objective = Wav2Vec2Objective(embed_dim=64, num_entries=16, final_dim=32, num_negatives=5)
    assert objective.health() == {}  # nothing before the first step
    out = objective(Wav2Vec2Encoder(preset="tiny"), SpanMaskViews()(waves(), torch.Generator().manual_seed(0)))
    health = objective.health()
    assert set(health) == {"codebook_perplexity", "codebook_perplexity_fraction", "diversity_loss",
                           "contrastive_loss", "contrastive_accuracy"}  # fmt: skip
    assert health["codebook_perplexity"] == pytest.approx(float(out["perplexity"]))
    assert health["codebook_perplexity_fraction"] == pytest.approx(float(out["perplexity"]) / 32)  # G 2 x V 16
    assert health["diversity_loss"] == pytest.approx(float(out["diversity"]))
    assert health["contrastive_loss"] == pytest.approx(float(out["contrastive"]))
    assert health["contrastive_accuracy"] == pytest.approx(float(out["accuracy"]))
    assert all(isinstance(v, float) for v in health.values())


def codebook_health(perplexity: float) -> dict[str, float]:
    return {"codebook_perplexity": perplexity, "codebook_perplexity_fraction": perplexity / 640,
            "diversity_loss": 1 - perplexity / 640, "contrastive_loss": 0.0, "contrastive_accuracy": 1.0}  # fmt: skip


def test_wav2vec2_codebook_alarm_needs_two_collapsed_checks_running() -> None:
    objective = Wav2Vec2Objective(embed_dim=16, feature_dim=8)  # G 2 x V 320: the alarm is under 64
    assert objective.health_alarms(codebook_health(3.0)) == []  # one low batch is not a collapse
    assert objective.health_alarms(codebook_health(200.0)) == []  # the streak restarts
    assert objective.health_alarms(codebook_health(3.0)) == []
    ((rule, message),) = objective.health_alarms(codebook_health(2.0))
    assert rule == "wav2vec2_codebook_collapse"
    assert "perplexity is 2.0 of a maximum 640" in message and "diversity_weight" in message
    assert "layer_norm" in message and "feature_penalty_weight = 0" in message
    healthy = Wav2Vec2Objective(embed_dim=16, feature_dim=8)
    assert [healthy.health_alarms(codebook_health(p)) for p in (70.0, 65.0, 200.0, 64.0)] == [[], [], [], []]
    assert healthy.health_alarms({}) == []


def test_hubert_health_counts_target_and_predicted_clusters() -> None:
    objective = HuBERTObjective(embed_dim=64, num_clusters=8, final_dim=32)
    assert objective.health() == {}
    views = SpanMaskViews(mask_prob=0.8)(_with_targets(waves()), torch.Generator().manual_seed(0))
    out = objective(Wav2Vec2Encoder(preset="tiny"), views)
    health = objective.health()
    assert set(health) == {"masked_accuracy", "target_usage", "target_entropy", "predicted_usage"}
    assert health["masked_accuracy"] == pytest.approx(float(out["accuracy"]))
    assert health["target_usage"] == 1.0  # targets cycle through all 8 clusters
    assert 0 < health["target_entropy"] <= torch.log(torch.tensor(8.0)).item() + 1e-6
    assert 1 / 8 <= health["predicted_usage"] <= 1.0


def test_hubert_alarm_fires_when_predictions_use_one_cluster_for_two_checks() -> None:
    objective = HuBERTObjective(embed_dim=16, num_clusters=100)
    collapsed = {"masked_accuracy": 0.1, "target_usage": 0.4, "target_entropy": 3.0, "predicted_usage": 0.01}
    assert objective.health_alarms(collapsed) == []
    ((rule, message),) = objective.health_alarms(collapsed)
    assert rule == "hubert_prediction_collapse" and "predicts 1 of its 100 clusters" in message
    healthy = HuBERTObjective(embed_dim=16, num_clusters=100)
    spread = {**collapsed, "predicted_usage": 0.2}
    few_targets = {**collapsed, "target_usage": 0.02}  # the labels themselves use two clusters: no alarm
    assert [healthy.health_alarms(h) for h in (spread, spread, few_targets, few_targets)] == [[], [], [], []]


def test_paper_settings_on_short_clips_fire_the_codebook_alarm_in_a_tiny_run(fsdd_root: Path, tmp_path: Path) -> None:
    # issue 16: the monitors read health() and health_alarms() during training; the paper's settings collapse here
    config = ssl_speech.wav2vec2(steps=12)
    config["data"].update(root=str(fsdd_root), limit=48, progress=False)
    config["encoder"]["preset"] = "tiny"
    config["objective"].update(diversity_weight=0.1, feature_penalty_weight=10.0, num_entries=32, final_dim=32)
    config["train"].update(lr=5e-4, precision="fp32", progress=False, monitor_every=3, monitor_samples=32)
    config.update(evaluate=[], compare_random_init=False, plots=False)
    with pytest.warns(UserWarning, match="collapse alarm at step .* \\(wav2vec2_codebook_collapse\\)"):
        result = ssl_core.run(config, out=tmp_path / "run")
    monitors = result.metrics["monitors"]
    (alarm,) = [a for a in monitors["alarms"] if a["rule"] == "wav2vec2_codebook_collapse"]
    perplexity = dict(zip(monitors["steps"], monitors["curves"]["health/codebook_perplexity"], strict=True))
    assert perplexity[0] is None and perplexity[alarm["step"]] < 0.1 * 2 * 32
    assert "diversity_weight" in alarm["message"]
