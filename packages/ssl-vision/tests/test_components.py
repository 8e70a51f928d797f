"""Behaviour of the ViT/ResNet encoders, the MAE and multi-crop views and the MAE/DINO objectives."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from ssl_core import Views
from ssl_core.testing import EncoderConformance, ObjectiveConformance, ViewGeneratorConformance
from ssl_vision import (
    DINOObjective,
    MAEObjective,
    MAEViews,
    MultiCropViews,
    ResNetEncoder,
    ViTEncoder,
    functional,
    random_patch_mask,
)


def tiny_vit(**kwargs: Any) -> ViTEncoder:
    options: dict[str, Any] = {"image_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
    return ViTEncoder("tiny", **{**options, **kwargs})


def uint8_images(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- conformance


class TestViTConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return tiny_vit()

    def make_batch(self) -> dict[str, Any]:
        return {"x": uint8_images(), "y": torch.tensor([0, 1, 0, 1])}

    def make_token_mask(self, encoder: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return random_patch_mask(4, 16, 0.5, torch.Generator().manual_seed(0))


class TestResNetConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return ResNetEncoder("resnet18", cifar_stem=True)

    def make_batch(self) -> dict[str, Any]:
        return {"x": uint8_images(2), "y": torch.tensor([0, 1])}


class TestMAEViewsConformance(ViewGeneratorConformance):
    def make_views(self) -> Any:
        return MAEViews(image_size=16, patch_size=4)

    def make_batch(self) -> dict[str, Any]:
        return {"x": uint8_images(), "y": torch.tensor([0, 1, 0, 1])}


class TestMultiCropConformance(ViewGeneratorConformance):
    def make_views(self) -> Any:
        return MultiCropViews(image_size=16, local_size=8, num_local=2)

    def make_batch(self) -> dict[str, Any]:
        return {"x": uint8_images(), "y": torch.tensor([0, 1, 0, 1])}


class TestMAEObjectiveConformance(ObjectiveConformance):
    train_steps = 8

    def make_encoder(self) -> nn.Module:
        return tiny_vit()

    def make_objective(self, embed_dim: int) -> nn.Module:
        return MAEObjective(embed_dim, image_size=16, patch_size=4, decoder_dim=32, decoder_depth=1, decoder_heads=2)

    def make_views(self) -> Views:
        return MAEViews(image_size=16, patch_size=4)({"x": uint8_images(8)}, torch.Generator().manual_seed(0))


class TestDINOObjectiveConformance(ObjectiveConformance):
    """The loss-decrease check runs with the teacher as sharp as the student, following it at once, uncentred.

    With DINO's sharper teacher and its centring the cross-entropy first rises (centring
    raises the teacher's entropy), so a monotone check would test the schedules, not the
    objective; the schedules have their own tests below.
    """

    train_steps = 8

    def make_encoder(self) -> nn.Module:
        self.encoder = tiny_vit()
        return self.encoder

    def make_objective(self, embed_dim: int) -> nn.Module:
        return DINOObjective(embed_dim, encoder=self.encoder, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                             teacher_temp=0.1, warmup_teacher_temp=0.1, momentum=0.0, momentum_end=0.0,
                             center_momentum=1.0)  # fmt: skip

    def make_views(self) -> Views:
        views = MultiCropViews(image_size=16, local_size=8, num_local=2)
        return views({"x": uint8_images(8)}, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- encoders


def test_vit_drops_masked_patches_and_keeps_patch_order() -> None:
    encoder = tiny_vit().eval()
    batch = {"x": uint8_images(2)}
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, 4:] = True
    out = encoder(batch, token_mask=mask)
    assert out.tokens is not None and out.tokens.shape == (2, 4, 32)
    assert out.layers is not None and len(out.layers) == 2


def test_vit_takes_uint8_or_unit_float_images_alike() -> None:
    encoder = tiny_vit().eval()
    x = uint8_images()
    assert torch.allclose(encoder({"x": x}).pooled, encoder({"x": x.float() / 255}).pooled, atol=1e-5)


def test_explicit_and_fused_attention_agree() -> None:
    torch.manual_seed(0)
    explicit = tiny_vit(attention="explicit").eval()
    fused = tiny_vit(attention="fused").eval()
    fused.load_state_dict(explicit.state_dict())
    x = {"x": uint8_images()}
    assert torch.allclose(explicit(x).pooled, fused(x).pooled, atol=1e-5)


def test_vit_takes_smaller_crops_by_resampling_positions() -> None:
    out = tiny_vit()({"x": uint8_images(size=8)})
    assert out.tokens is not None and out.tokens.shape == (4, 4, 32)


def test_image_size_not_divisible_by_patch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not divisible by patch size 4"):
        ViTEncoder("tiny", image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="not divisible by patch size 4"):
        tiny_vit()({"x": uint8_images(size=18)})


def test_token_mask_errors_name_the_fix() -> None:
    encoder = tiny_vit()
    with pytest.raises(ValueError, match="patch_size must match"):
        encoder({"x": uint8_images()}, token_mask=torch.zeros(4, 64, dtype=torch.bool))
    uneven = torch.zeros(4, 16, dtype=torch.bool)
    uneven[0, :3] = True
    with pytest.raises(ValueError, match="same number of patches"):
        encoder({"x": uint8_images()}, token_mask=uneven)


def test_grayscale_tensor_input_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValueError, match="convert grayscale"):
        tiny_vit()({"x": torch.zeros(2, 1, 16, 16)})


# ---------------------------------------------------------------- views


def test_mae_views_mask_exactly_the_ratio() -> None:
    views = MAEViews(image_size=16, patch_size=4, mask_ratio=0.75)({"x": uint8_images()}, torch.Generator())
    assert views.masks is not None and views.masks[0] is not None
    assert views.masks[0].sum(1).tolist() == [12, 12, 12, 12]
    x = views.batches[0]["x"]
    assert x.dtype == torch.float32 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("backend", ["batched", "torchvision"])
def test_multi_crop_shapes_and_determinism(backend: str) -> None:
    views = MultiCropViews(image_size=16, local_size=8, num_local=3, backend=backend)
    a = views({"x": uint8_images()}, torch.Generator().manual_seed(0))
    b = views({"x": uint8_images()}, torch.Generator().manual_seed(0))
    assert [tuple(v["x"].shape) for v in a.batches] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 3
    assert a.extras["num_global"] == 2
    assert all(torch.equal(x["x"], y["x"]) for x, y in zip(a.batches, b.batches, strict=True))


def test_batched_and_torchvision_multi_crop_have_similar_statistics() -> None:
    x = {"x": uint8_images(64, size=16)}
    stats = []
    for backend in ("batched", "torchvision"):
        views = MultiCropViews(image_size=16, local_size=8, num_local=2, backend=backend)
        out = views(x, torch.Generator().manual_seed(0))
        crops = torch.cat([v["x"].flatten(1) for v in out.batches[:2]])
        stats.append((float(crops.mean()), float(crops.std())))
    assert abs(stats[0][0] - stats[1][0]) < 0.05 and abs(stats[0][1] - stats[1][1]) < 0.05


def test_views_reject_non_image_batches() -> None:
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        MultiCropViews(image_size=16, local_size=8)({"x": torch.zeros(4, 16)}, torch.Generator())


# ---------------------------------------------------------------- objectives


def test_dino_loss_equals_the_pairwise_definition() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher, center = torch.randn(4, 3, 10, generator=g), torch.randn(2, 3, 10, generator=g), torch.randn(10)
    expected, pairs = torch.tensor(0.0), 0
    t = torch.softmax((teacher - center) / 0.04, -1)
    s = torch.log_softmax(student / 0.1, -1)
    for i, j in itertools.product(range(2), range(4)):
        if i != j:
            expected, pairs = expected + (-(t[i] * s[j]).sum(-1)).mean(), pairs + 1
    assert torch.allclose(functional.dino_loss(student, teacher, center, 0.1, 0.04), expected / pairs, atol=1e-5)


def test_mae_loss_is_zero_for_a_perfect_normalised_prediction() -> None:
    target = torch.randn(5, 48)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert float(functional.mae_loss(normed, target)) < 1e-10


def test_patchify_order_matches_the_patch_embedding() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = functional.patchify(images, 4)
    assert torch.equal(patches[1, 1].view(4, 4, 3)[..., 0], images[1, 0, :4, 4:])


def dino_setup(freeze: int = 0) -> tuple[ViTEncoder, DINOObjective, Views]:
    torch.manual_seed(0)
    encoder = tiny_vit()
    objective = DINOObjective(32, encoder=encoder, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                              freeze_last_layer_steps=freeze, warmup_teacher_temp_steps=4)  # fmt: skip
    views = MultiCropViews(image_size=16, local_size=8, num_local=2)({"x": uint8_images(8)}, torch.Generator())
    return encoder, objective, views


def test_dino_teacher_has_no_gradients_and_follows_the_student_by_ema() -> None:
    encoder, objective, views = dino_setup()
    assert not any(p.requires_grad for p in objective.teacher_encoder.parameters())
    optimizer = torch.optim.SGD([p for m in (encoder, objective) for p in m.parameters() if p.requires_grad], lr=0.1)
    before = [p.clone() for p in objective.teacher_encoder.parameters()]
    objective(encoder, views)["loss"].backward()
    optimizer.step()
    objective.on_step_end(1, 10)
    moved = [not torch.equal(a, b) for a, b in zip(before, objective.teacher_encoder.parameters(), strict=True)]
    assert any(moved), "the EMA update must move the teacher towards the student"
    assert objective.export_encoder(encoder) is objective.teacher_encoder


def test_dino_freezes_the_last_layer_for_the_first_steps() -> None:
    encoder, objective, views = dino_setup(freeze=2)
    objective(encoder, views)["loss"].backward()
    assert objective.head.last_weight.grad is not None
    assert float(objective.head.last_weight.grad.abs().sum()) == 0.0
    objective.zero_grad()
    objective.on_step_end(2, 10)
    objective(encoder, views)["loss"].backward()
    assert float(objective.head.last_weight.grad.abs().sum()) > 0.0


def test_dino_teacher_temperature_warms_up() -> None:
    _, objective, _ = dino_setup()
    temps = []
    for step in range(6):
        objective.step.fill_(step)
        temps.append(objective.current_teacher_temp())
    assert temps[0] == pytest.approx(0.04) and temps[-1] == pytest.approx(0.07)
    assert temps == sorted(temps)


def test_dino_teacher_temperature_warm_up_follows_the_run_length() -> None:
    torch.manual_seed(0)
    encoder = tiny_vit()
    objective = DINOObjective(32, encoder=encoder, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                              warmup_teacher_temp_ratio=0.3)  # fmt: skip
    assert objective.current_teacher_temp() == pytest.approx(0.04)  # step 0: the warm-up starts
    objective.on_step_end(3, 10)  # a 10-step run: 3 warm-up steps
    assert objective.warmup_steps() == 3 and objective.current_teacher_temp() == pytest.approx(0.07)
    objective.on_step_end(3, 100)  # the same objective in a 100-step run: 30 warm-up steps
    assert objective.warmup_steps() == 30 and objective.current_teacher_temp() == pytest.approx(0.043)
    with pytest.warns(UserWarning, match="warmup_teacher_temp_ratio=0.3 wins"):
        DINOObjective(32, encoder=encoder, out_dim=64, hidden_dim=32, bottleneck_dim=16,
                      warmup_teacher_temp_ratio=0.3, warmup_teacher_temp_steps=5)  # fmt: skip
    with pytest.raises(ValueError, match="warmup_teacher_temp_ratio"):
        DINOObjective(32, encoder=encoder, warmup_teacher_temp_ratio=1.5)


def test_dino_run_length_is_checkpointed_and_old_checkpoints_load() -> None:
    _, objective, _ = dino_setup()
    objective.on_step_end(2, 50)
    state = objective.state_dict()
    assert int(state["total_steps"]) == 50
    _, fresh, _ = dino_setup()
    fresh.load_state_dict(state)
    assert int(fresh.total_steps) == 50 and int(fresh.step) == 2
    del state["total_steps"]  # a checkpoint from before the buffer existed
    _, legacy, _ = dino_setup()
    legacy.load_state_dict(state)  # strict
    assert int(legacy.total_steps) == 0


def test_dino_trains_a_non_image_encoder() -> None:
    from ssl_core.testing import ToyEncoder

    torch.manual_seed(0)
    encoder = ToyEncoder(in_dim=12, embed_dim=16)
    objective = DINOObjective(16, encoder=encoder, out_dim=32, hidden_dim=32, bottleneck_dim=8)
    x = torch.randn(8, 6, 12)
    views = Views(batches=[{"x": x + 0.1 * torch.randn_like(x)} for _ in range(3)], extras={"num_global": 2})
    loss = objective(encoder, views)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None for p in encoder.parameters())


def test_mae_rejects_a_mask_for_another_grid() -> None:
    encoder = tiny_vit()
    objective = MAEObjective(32, image_size=16, patch_size=4, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    views = Views(batches=[{"x": uint8_images()}], masks=[torch.zeros(4, 64, dtype=torch.bool)])
    with pytest.raises(ValueError, match="same image_size and patch_size"):
        objective(encoder, views)


def test_mae_under_bf16_autocast_gives_a_float32_loss_close_to_fp32() -> None:
    torch.manual_seed(0)
    encoder = tiny_vit()
    objective = MAEObjective(32, image_size=16, patch_size=4, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    views = MAEViews(image_size=16, patch_size=4)({"x": uint8_images(8)}, torch.Generator().manual_seed(0))
    full = objective(encoder, views)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = objective(encoder, views)["loss"]
    assert half.dtype == torch.float32
    assert abs(float(half.detach()) - float(full.detach())) < 0.05 * float(full.detach())


def test_mae_weight_init_is_xavier_and_unknown_names_are_rejected() -> None:
    torch.manual_seed(0)
    encoder = tiny_vit(weight_init="mae")
    fc1 = encoder.vit.blocks[0].mlp.fc1
    bound = (6 / (fc1.in_features + fc1.out_features)) ** 0.5
    assert float(fc1.weight.detach().abs().max()) <= bound and float(fc1.bias.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="weight_init"):
        tiny_vit(weight_init="xavier")


def test_dino_reports_its_health_and_recognises_a_uniform_teacher() -> None:
    encoder, objective, views = dino_setup()
    assert objective.health() == {}
    loss = float(objective(encoder, views)["loss"])
    health = objective.health()
    assert set(health) == {"teacher_entropy", "student_teacher_kl", "center_norm"}
    assert health["student_teacher_kl"] == pytest.approx(max(0.0, loss - health["teacher_entropy"]), abs=1e-5)
    objective.step.fill_(10)  # past the 4 warm-up steps
    uniform = {"teacher_entropy": 0.99 * math.log(64), "student_teacher_kl": 0.01, "center_norm": 1.0}
    assert objective.health_alarms(uniform) == []  # once may be passing through
    ((rule, message),) = objective.health_alarms(uniform)  # twice: it sits there
    assert rule == "dino_uniform_teacher" and "smaller out_dim" in message
    healthy = {"teacher_entropy": 2.0, "student_teacher_kl": 0.5, "center_norm": 1.0}
    assert objective.health_alarms(healthy) == []


def test_mae_reports_the_masked_patch_loss() -> None:
    torch.manual_seed(0)
    encoder = tiny_vit()
    objective = MAEObjective(embed_dim=32, image_size=16, patch_size=4, decoder_dim=16, decoder_depth=1,
                             decoder_heads=2)  # fmt: skip
    views = MAEViews(image_size=16, patch_size=4)({"x": uint8_images(4)}, torch.Generator())
    loss = float(objective(encoder, views)["loss"])
    assert objective.health() == {"masked_patch_loss": pytest.approx(loss)}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dino_per_crop_and_grouped_forwards_give_the_same_loss_and_gradients(precision: str) -> None:
    """``group_crops`` only changes how the student's forwards are batched (a ViT has no batch statistics)."""
    results = []
    for group in (True, False, None):
        encoder, objective, views = dino_setup()
        objective.group_crops = group
        calls = []
        handle = encoder.register_forward_hook(lambda _m, args, _out, calls=calls: calls.append(args[0]["x"].shape[0]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = objective(encoder, views)["loss"]
        loss.backward()
        handle.remove()
        grad = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])
        results.append((float(loss), grad, calls))
    (grouped_loss, grouped_grad, grouped_calls), (per_crop_loss, per_crop_grad, per_crop_calls) = results[:2]
    assert grouped_calls == [16, 16] and per_crop_calls == [8, 8, 8, 8]  # the student's forwards (2 global, 2 local)
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    assert abs(grouped_loss - per_crop_loss) < tolerance
    assert torch.allclose(grouped_grad, per_crop_grad, atol=tolerance, rtol=tolerance)
    auto_calls = results[2][2]
    assert auto_calls == (per_crop_calls if precision == "fp32" else grouped_calls)  # CPU: per crop only in fp32


@pytest.mark.parametrize("size", [16, 8])
def test_vit_pooled_only_equals_the_full_forward_and_its_gradients(size: int) -> None:
    """The CLS-only last block gives DINO the same vector and the same gradients, for less work."""
    torch.manual_seed(0)
    encoder = tiny_vit()
    batch = {"x": uint8_images(4, size)}
    full = encoder(batch)
    full.pooled.square().sum().backward()
    full_grads = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    fast = encoder(batch, pooled_only=True)
    fast.pooled.square().sum().backward()
    assert fast.tokens is None and fast.layers is None
    assert torch.allclose(full.pooled, fast.pooled, atol=1e-5)
    for a, p in zip(full_grads, encoder.parameters(), strict=True):
        assert torch.allclose(a, p.grad, rtol=1e-3, atol=1e-4)  # float32 rounding of a reordered sum
