"""Conformance (ssl_core.testing) and behaviour tests of the TS2Vec/MVP components."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ssl_core import Views
from ssl_core.testing import (
    DatasetConformance,
    EncoderConformance,
    EvaluatorConformance,
    ObjectiveConformance,
    ViewGeneratorConformance,
)
from ssl_timeseries import (
    CropViews,
    MVPObjective,
    SubsequenceMaskViews,
    SVMEvaluator,
    TimestampMaskViews,
    TS2VecEncoder,
    TS2VecObjective,
    arrays,
    functional,
    ucr,
)

pytest_plugins = ["ssl_core.testing.fixtures"]


def series_batch(batch_size: int = 8, length: int = 40, channels: int = 2, seed: int = 0) -> dict[str, Any]:
    rng = torch.Generator().manual_seed(seed)
    y = torch.arange(batch_size) % 2
    t = torch.linspace(0, 6.28, length)
    base = torch.stack([torch.sin(t * (1 + y_i)) for y_i in y.tolist()])[:, :, None]
    x = base.repeat(1, 1, channels) + 0.1 * torch.randn(batch_size, length, channels, generator=rng)
    padding = torch.zeros(batch_size, length, dtype=torch.bool)
    padding[1, -5:] = True  # a shorter series, padded (as collate_series produces it)
    x = x.masked_fill(padding[..., None], 0.0)
    return {"x": x, "y": y, "padding_mask": padding, "index": torch.arange(batch_size)}


def small_encoder(channels: int = 2) -> TS2VecEncoder:
    return TS2VecEncoder(in_channels=channels, embed_dim=16, hidden_dim=8, depth=3)


# ----------------------------------------------------------------------------- conformance


class TestTS2VecEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return small_encoder()

    def make_batch(self) -> dict[str, Any]:
        return series_batch()


class TestCropViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> CropViews:
        return CropViews()

    def make_batch(self) -> dict[str, Any]:
        return series_batch()


class TestTimestampMaskViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> TimestampMaskViews:
        return TimestampMaskViews(mask="continuous")

    def make_batch(self) -> dict[str, Any]:
        return series_batch()


class TestSubsequenceMaskViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> SubsequenceMaskViews:
        return SubsequenceMaskViews()

    def make_batch(self) -> dict[str, Any]:
        return series_batch()


class TestTS2VecObjectiveConformance(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return TS2VecObjective()

    def make_encoder(self) -> nn.Module:
        return small_encoder()

    def make_views(self) -> Views:
        return CropViews()(series_batch(), torch.Generator().manual_seed(0))


class TestTS2VecObjectiveOnToyEncoder(ObjectiveConformance):
    """The default double: a token encoder from core with noisy aligned views."""

    def make_objective(self, embed_dim: int) -> nn.Module:
        return TS2VecObjective()


class TestMVPObjectiveConformance(ObjectiveConformance):
    lr = 3e-3

    def make_objective(self, embed_dim: int) -> nn.Module:
        return MVPObjective(embed_dim=embed_dim, in_channels=2)

    def make_encoder(self) -> nn.Module:
        return small_encoder()

    def make_views(self) -> Views:
        return SubsequenceMaskViews(mask_ratio=0.3)(series_batch(), torch.Generator().manual_seed(0))


class TestSVMEvaluatorConformance(EvaluatorConformance):
    def make_evaluator(self) -> SVMEvaluator:
        return SVMEvaluator()


class TestSVMEvaluatorOnSeries(EvaluatorConformance):
    def make_evaluator(self) -> SVMEvaluator:
        return SVMEvaluator()

    def make_encoder(self) -> nn.Module:
        return small_encoder()

    def make_splits(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [series_batch(16, seed=s) for s in range(4)], [series_batch(16, seed=10 + s) for s in range(2)]


class TestUCRConformance(DatasetConformance):
    def make_provider(self) -> Any:
        return ucr

    def provider_options(self) -> dict[str, Any]:
        return {"dataset": "ItalyPowerDemand"}


class TestArraysConformance(DatasetConformance):
    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Any) -> None:
        rng = np.random.default_rng(0)
        np.savez(
            tmp_path / "toy.npz",
            x_train=rng.normal(size=(12, 20, 2)),
            y_train=np.arange(12) % 3,
            x_test=rng.normal(size=(6, 20, 2)),
            y_test=np.arange(6) % 3,
        )
        self.root = str(tmp_path)

    def make_provider(self) -> Any:
        return arrays

    def provider_options(self) -> dict[str, Any]:
        return {"path": "toy.npz"}


# ----------------------------------------------------------------------------- behaviour


def test_hierarchical_loss_matches_a_direct_computation() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)

    def reference(a: torch.Tensor, b: torch.Tensor, instance: bool) -> torch.Tensor:
        # explicit per-anchor cross-entropy (loops are fine in a test)
        groups = range(a.shape[1]) if instance else range(a.shape[0])
        total, count = torch.tensor(0.0), 0
        for g in groups:
            z = torch.cat([a[:, g], b[:, g]]) if instance else torch.cat([a[g], b[g]])
            n = z.shape[0] // 2
            sim = z @ z.T
            for i in range(2 * n):
                logits = torch.cat([sim[i, :i], sim[i, i + 1 :]])
                j = (i + n) % (2 * n)
                target = j if j < i else j - 1
                total = total - torch.log_softmax(logits, 0)[target]
                count += 1
        return total / count

    assert torch.allclose(functional.instance_contrastive_loss(z1, z2), reference(z1, z2, True), atol=1e-5)
    assert torch.allclose(functional.temporal_contrastive_loss(z1, z2), reference(z1, z2, False), atol=1e-5)


def test_crops_overlap_and_align() -> None:
    x = torch.arange(30.0).view(1, 30, 1).repeat(6, 1, 1)
    views = CropViews(mask="none")({"x": x}, torch.Generator().manual_seed(3))
    overlap = views.extras["overlap"]
    a, b = views.batches[0]["x"], views.batches[1]["x"]
    assert torch.equal(a[:, a.shape[1] - overlap :], b[:, :overlap])
    assert len(set(a[:, 0, 0].tolist())) > 1  # offsets differ per sample


def test_crop_shorter_than_minimum_names_the_sample() -> None:
    batch = series_batch()
    batch["padding_mask"][3, 2:] = True
    with pytest.raises(ValueError, match=r"sample\(s\) 3 have \[2\] observed steps"):
        CropViews(min_crop=4)(batch, torch.Generator())


def test_encoder_hides_masked_and_nan_steps() -> None:
    encoder = small_encoder().eval()
    batch = series_batch()
    out = encoder(batch)
    assert out.padding_mask is not None and bool(out.padding_mask[1, -1]) and not bool(out.padding_mask[0, -1])
    changed = batch["x"].clone()
    changed[1, -5:] = 123.0  # values behind the padding are ignored
    again = encoder({"x": changed, "padding_mask": batch["padding_mask"]})
    assert torch.allclose(out.pooled, again.pooled)
    raw = batch["x"].clone()
    raw[1, -5:] = float("nan")  # NaN in x counts as padding too
    assert torch.allclose(out.pooled, encoder({"x": raw}).pooled)


def test_multivariate_into_univariate_encoder_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"built for 1 channel.*multivariate with 2 channels"):
        TS2VecEncoder(in_channels=1, embed_dim=8, hidden_dim=8, depth=1)(series_batch(channels=2))


def test_unknown_dataset_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean 'GunPoint'"):
        ucr(dataset="gunpoint")


def test_all_nan_rows_name_the_sample(tmp_path: Any) -> None:
    x = np.random.default_rng(0).normal(size=(5, 10))
    x[2] = np.nan
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=[0, 1, 0, 1, 0], x_test=x[:2], y_test=[0, 1])
    with pytest.raises(ValueError, match=r"train sample\(s\) \[2\] are all NaN"):
        arrays(path=str(tmp_path / "bad.npz"))


def test_ucr_normalisation_and_shapes() -> None:
    splits = ucr(dataset="BasicMotions")
    x = splits.train.x  # type: ignore[attr-defined]
    assert x.shape == (40, 100, 6) and splits.info["in_channels"] == 6 and splits.num_classes == 4
    assert torch.allclose(x.mean(dim=(0, 1)), torch.zeros(6), atol=1e-4)  # UEA: per-channel standardised
    batch = splits.collate([splits.train[i] for i in range(3)])
    assert batch["x"].shape == (3, 100, 6) and batch["index"].tolist() == [0, 1, 2]


def test_views_are_deterministic_and_vectorised_geometric_masks() -> None:
    mask = functional.geometric_mask((256, 300), torch.Generator().manual_seed(0), ratio=0.15, mean_length=3)
    assert abs(mask.float().mean().item() - 0.15) < 0.02
    runs = (mask[:, 1:] & ~mask[:, :-1]).sum()  # starts of masked runs
    assert 2.4 < mask.sum().item() / runs.item() < 3.6  # mean masked run length about 3


def test_ts2vec_loss_decreases_on_gunpoint_batches() -> None:
    splits = ucr(dataset="GunPoint")
    batch = splits.collate([splits.train[i] for i in range(8)])
    torch.manual_seed(0)
    encoder = TS2VecEncoder(in_channels=1, embed_dim=32, hidden_dim=16, depth=4)
    objective, views = TS2VecObjective(), CropViews()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        loss = objective(encoder, views(batch, generator))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


class TestAveragedTS2VecEncoderConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return TS2VecEncoder(in_channels=2, embed_dim=16, hidden_dim=8, depth=3, average_weights=True)

    def make_batch(self) -> dict[str, Any]:
        return series_batch()


def test_weight_averaging_is_the_mean_of_the_training_iterates() -> None:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(in_channels=2, embed_dim=8, hidden_dim=8, depth=1, dropout=0.0, average_weights=True)
    batch = series_batch()
    encoder.eval()
    untrained = encoder(batch).pooled  # no training yet: the live weights
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
    seen = []
    encoder.train()
    for _ in range(3):
        seen.append([p.detach().clone() for p in encoder.net.parameters()])
        loss = encoder(batch).pooled.square().mean()
        loss = loss + encoder(batch).pooled.mean()  # two forwards per step (two views) count once
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seen.append([p.detach().clone() for p in encoder.net.parameters()])
    assert int(encoder.avg_count) == 3  # the initial weights and those after steps 1 and 2
    encoder.eval()
    averaged = encoder(batch).pooled  # folds in the weights after the last step
    assert int(encoder.avg_count) == 4  # as AveragedModel: initial weights + one per optimizer step
    first = next(iter(encoder.net.parameters()))
    assert torch.allclose(encoder.avg_0, torch.stack([s[0] for s in seen]).mean(0), atol=1e-6)
    assert not torch.allclose(encoder.avg_0, first)
    assert torch.allclose(encoder(batch).pooled, averaged)  # a second eval forward changes nothing
    assert not torch.allclose(averaged, untrained)
    fresh = TS2VecEncoder(in_channels=2, embed_dim=8, hidden_dim=8, depth=1, dropout=0.0, average_weights=True)
    fresh.load_state_dict(encoder.state_dict())  # the average travels with checkpoints
    assert torch.allclose(fresh.eval()(batch).pooled, averaged)


def test_arrays_reads_ucr_style_tables(tmp_path: Any) -> None:
    rows = np.random.default_rng(0).normal(size=(6, 12))
    labels = np.array([[1], [2], [1], [2], [1], [2]])
    np.savetxt(tmp_path / "Toy_TRAIN.tsv", np.hstack([labels, rows]), delimiter="\t")
    np.savetxt(tmp_path / "Toy_TEST.tsv", np.hstack([labels[:4], rows[:4]]), delimiter="\t")
    splits = arrays(str(tmp_path))
    assert splits.num_classes == 2 and splits.info["series_length"] == 12 and splits.info["in_channels"] == 1
    assert splits.collate([splits.test[i] for i in range(4)])["y"].tolist() == [0, 1, 0, 1]


def test_weight_averaging_counts_each_set_of_weights_once() -> None:
    torch.manual_seed(0)
    encoder = TS2VecEncoder(in_channels=2, embed_dim=8, hidden_dim=8, depth=1, dropout=0.0, average_weights=True)
    batch = series_batch()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=0.1)
    encoder.train()
    for _ in range(2):
        loss = encoder(batch).pooled.square().mean() + encoder(batch).pooled.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        encoder(batch)  # a training-mode forward without gradients does not fold weights in
    assert int(encoder.avg_count) == 2
    encoder.eval()
    encoder(batch)
    assert int(encoder.avg_count) == 3  # initial + after each of the 2 steps, as AveragedModel
    parent = nn.ModuleDict({"encoder": TS2VecEncoder(2, 8, 8, 1, dropout=0.0, average_weights=True)})
    parent.load_state_dict(nn.ModuleDict({"encoder": encoder}).state_dict())  # a resume through a wrapper
    parent.eval()
    parent["encoder"](batch)
    assert int(parent["encoder"].avg_count) == 3  # the loaded weights are not counted again


def test_the_hierarchical_loss_reports_its_instance_and_temporal_parts() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 16, 8), torch.randn(4, 16, 8)
    parts: dict[str, torch.Tensor] = {}
    loss = functional.hierarchical_contrastive_loss(z1, z2, parts=parts)
    assert set(parts) == {"instance", "temporal"} and float(parts["instance"]) > 0 < float(parts["temporal"])
    assert float(parts["instance"] + parts["temporal"]) == pytest.approx(float(loss), rel=1e-6)
    assert torch.equal(loss, functional.hierarchical_contrastive_loss(z1, z2))  # the same loss either way
