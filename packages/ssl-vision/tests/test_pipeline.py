"""MAE and DINO through ssl-core's pipeline: recipes, real CIFAR-10 data, teacher export, exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import ssl_vision
from ssl_core import ConfigError, hookimpl, load_checkpoint, load_config, load_encoder, make_plugin_manager, run

TINY_VIT = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2"]
VIT = {"backbone": "vit-tiny"}  # the DINO recipe's ViT preset (TINY_VIT shrinks it further)
QUIET = ["train.progress=false", "plots=false", "compare_random_init=false", "train.precision=fp32"]


def dino_overrides(steps: int) -> list[str]:
    return [*TINY_VIT, *QUIET, f"train.steps={steps}", "train.batch_size=4", "train.warmup_ratio=0.25",
            "views.num_local=2", "views.local_size=16", "objective.out_dim=64", "objective.hidden_dim=32",
            "objective.bottleneck_dim=16", "objective.freeze_last_layer_steps=1",
            "objective.warmup_teacher_temp_ratio=0.5", "train.checkpoint_every=2", "train.log_every=1",
            "evaluate=[]"]  # fmt: skip


@pytest.mark.parametrize("preset", ["cifar", "paper"])
def test_recipes_are_valid_pipelines(preset: str) -> None:
    for recipe in (ssl_vision.mae, ssl_vision.dino):
        cfg = load_config(recipe(preset=preset))
        assert cfg.evaluate[0].name == "core.knn" and cfg.evaluate[0].params["k"] == [20, 200]
    with pytest.raises(ValueError, match="presets"):
        ssl_vision.mae(preset="huge")


def test_recipe_parameters_default_to_the_preset() -> None:
    assert ssl_vision.mae(preset="paper") == ssl_vision.mae(preset="paper", epochs=800, train_size=1_281_167)
    assert ssl_vision.mae() == ssl_vision.mae(epochs=3, train_size=10_000)
    assert ssl_vision.dino(preset="paper") == ssl_vision.dino(preset="paper", epochs=100, train_size=1_281_167)
    # an explicit value equal to the cifar default is no longer mistaken for "unset" under another preset
    assert ssl_vision.mae(preset="paper", epochs=3)["train"]["steps"] == 939
    assert ssl_vision.dino(preset="paper", train_size=10_000)["train"]["steps"] == 977
    with pytest.raises(ValueError, match="epochs"):
        ssl_vision.dino(epochs=0)


def test_dino_cifar_preset_is_a_resnet18_unless_the_vit_is_asked_for() -> None:
    resnet, vit = ssl_vision.dino(), ssl_vision.dino(backbone="vit-tiny")
    assert resnet["encoder"] == {"name": "vision.resnet", "model": "resnet18", "cifar_stem": True}
    assert vit["encoder"]["name"] == "vision.vit" and vit["views"]["num_local"] == 6
    for cfg in (resnet, vit):  # a constant teacher temperature: the warm-up to 0.07 drifts towards uniform here
        assert cfg["objective"]["teacher_temp"] == cfg["objective"]["warmup_teacher_temp"] == 0.04
    with pytest.raises(ValueError, match="backbone"):
        ssl_vision.dino(preset="paper", backbone="resnet18")
    with pytest.raises(ValueError, match="backbone"):
        ssl_vision.dino(backbone="vit-huge")  # type: ignore[arg-type]


def test_dino_settings_reproduce_the_measured_presets_and_scale_between_them() -> None:
    cifar = ssl_vision.dino_settings(train_size=10_000, batch_size=64, steps=469, image_size=32)
    assert cifar["objective"] == {key: ssl_vision.dino()["objective"][key] for key in cifar["objective"]}
    assert cifar["views"] == {"local_size": 16, "num_local": 4}
    paper = ssl_vision.dino_settings(1_281_167, 1024, 125_117, image_size=224)
    assert paper["objective"]["out_dim"] == 65_536 and paper["objective"]["momentum"] == 0.996
    assert paper["objective"]["warmup_teacher_temp_ratio"] == 0.3
    assert paper["views"] == {"local_size": 96, "num_local": 10}
    # fewer samples, fewer prototypes; a longer run, a slower teacher; a smaller batch at scale, a slower teacher too
    assert ssl_vision.dino_settings(2_000, 64, 469)["objective"]["out_dim"] == 1_024
    assert ssl_vision.dino_settings(10_000, 64, 4_690)["objective"]["momentum"] > cifar["objective"]["momentum"]
    assert ssl_vision.dino_settings(1_281_167, 256, 500_000)["objective"]["momentum"] == 0.9995
    assert ssl_vision.dino_settings(100, 64, 10)["objective"]["freeze_last_layer_steps"] == 2  # one epoch
    assert ssl_vision.dino_settings(10_000, 64, 20)["objective"]["freeze_last_layer_steps"] == 10  # half the run
    assert ssl_vision.dino_settings(10_000, 64, 469)["views"] == {}  # no image size: the encoder's own crops
    with pytest.raises(ValueError, match="batch_size"):
        ssl_vision.dino_settings(10_000, 0, 469)


def test_dino_resnet18_preset_trains_on_real_cifar_images(cifar_root: Path) -> None:
    overrides = [*QUIET, "data.max_per_class=4", "train.steps=3", "train.batch_size=8", "train.log_every=1",
                 "evaluate=[]"]  # fmt: skip
    result = run("vision.dino", overrides=overrides, root=str(cifar_root))
    assert len(result.history) == 3 and all(math.isfinite(row["loss"]) for row in result.history)
    assert result.encoder.embed_dim == 512  # the teacher ResNet-18 is what the run returns


@pytest.mark.parametrize("recipe", [ssl_vision.mae, ssl_vision.dino])
def test_warm_ups_follow_train_steps(recipe: object) -> None:
    paper = recipe(preset="paper")  # type: ignore[operator]
    cfg = load_config(paper, ["train.steps=1000"])
    assert cfg.train.total_warmup_steps() == round(paper["train"]["warmup_ratio"] * 1000)
    assert cfg.train.warmup_steps == 0  # nothing fixed that a shorter run would leave stale


def test_mae_learns_on_real_cifar_images(cifar_root: Path) -> None:
    overrides = [*TINY_VIT, *QUIET, "data.max_per_class=20", "train.steps=40", "train.batch_size=32",
                 "train.warmup_steps=4", "train.lr=2e-3", "train.log_every=1", "objective.decoder_dim=32",
                 "objective.decoder_depth=1", "objective.decoder_heads=2",
                 'evaluate=[{name="core.knn", k=[5]}]']  # fmt: skip
    result = run("vision.mae", overrides=overrides, root=str(cifar_root))
    losses = [row["loss"] for row in result.history]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses
    knn = result.metrics["evaluations"]["core.knn"]["knn_top1@5"]
    assert 0.0 <= knn <= 1.0


def test_dino_saves_and_evaluates_the_teacher(image_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run("vision.dino", overrides=dino_overrides(3), root=str(image_tree), out=out, recipe_args=VIT)
    objective_teacher = result.encoder
    state = load_checkpoint(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    teacher_state = {k[len("objective.teacher_encoder."):]: v for k, v in state["model"].items()
                     if k.startswith("objective.teacher_encoder.")}  # fmt: skip
    assert teacher_state.keys() == state["encoder"].keys()
    assert all(torch.equal(teacher_state[k], state["encoder"][k]) for k in teacher_state)
    student = {k[len("encoder.") :]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    assert any(not torch.equal(student[k], teacher_state[k]) for k in student), "the teacher must differ"
    loaded = load_encoder(out, root=str(image_tree)).encoder
    batch = {"x": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)}
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(batch).pooled, objective_teacher.eval()(batch).pooled, atol=1e-6)


class _Interrupt(Exception):
    pass


class _StopAtTwo:
    @hookimpl
    def ssl_on_step_end(self, step: int, metrics: dict[str, float]) -> None:
        if step == 2:
            raise _Interrupt


def test_dino_resume_continues_exactly(image_tree: Path, tmp_path: Path) -> None:
    straight = run(
        "vision.dino", overrides=dino_overrides(4), root=str(image_tree), out=tmp_path / "a", recipe_args=VIT
    )
    hooks = make_plugin_manager(load_entry_points=False)
    hooks.register(_StopAtTwo())
    with pytest.raises(_Interrupt):  # killed after the step-2 checkpoint of a 4-step run
        run("vision.dino", overrides=dino_overrides(4), root=str(image_tree), out=tmp_path / "b", hooks=hooks,
            recipe_args=VIT)  # fmt: skip
    resumed = run("vision.dino", overrides=dino_overrides(4), root=str(image_tree), out=tmp_path / "b", resume=True,
                  recipe_args=VIT)  # fmt: skip
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "step-000004.pt", weights_only=False)["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-000004.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "teacher, centre and step counter must resume exactly"


def test_patch_size_that_does_not_divide_the_images_is_a_config_error(image_tree: Path) -> None:
    with pytest.raises(ConfigError, match="not divisible by patch size"):
        run("vision.mae", overrides=[*QUIET, "encoder.patch_size=5", "train.steps=1"], root=str(image_tree))
