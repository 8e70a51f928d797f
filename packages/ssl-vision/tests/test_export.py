"""``ssl export --to timm`` (issue 16): tiny MAE / DINO runs load in plain timm and match our encoders within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import ssl_core
from ssl_core import ExportError, ExportSource, export, load_config
from ssl_vision import ResNetEncoder, TimmExporter, image_folder, mae

timm = pytest.importorskip("timm")

QUIET = {"evaluate": [], "plots": False, "compare_random_init": False}
TRAIN = {"steps": 2, "batch_size": 4, "progress": False, "precision": "fp32"}
DINO_HEAD = {"name": "vision.dino", "out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16,
             "freeze_last_layer_steps": 1, "warmup_teacher_temp_ratio": 0.5}  # fmt: skip
MULTI_CROP = {"name": "vision.multi_crop", "num_local": 2, "local_size": 16}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` (2 classes x 4) and ``test/`` (2 x 2) random 32-pixel PNGs."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 2)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / split / name / f"{i}.png")
    return root


def pipeline(encoder: dict[str, Any], views: dict[str, Any], objective: dict[str, Any]) -> dict[str, Any]:
    return {"name": "export-test", "data": {"name": "vision.image_folder"}, "encoder": encoder,
            "views": views, "objective": objective, "train": TRAIN, **QUIET}  # fmt: skip


def tiny_mae() -> dict[str, Any]:
    recipe = mae()
    encoder = {**recipe["encoder"], "depth": 2}  # ViT-Tiny/4 at 32 px, sine-cosine positions
    objective = {**recipe["objective"], "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}
    return pipeline(encoder, recipe["views"], objective)


RUNS = {
    "mae-vit": tiny_mae,
    "dino-vit": lambda: pipeline({"name": "vision.vit", "preset": "tiny", "patch_size": 8, "depth": 2},
                                 MULTI_CROP, DINO_HEAD),
    "dino-resnet": lambda: pipeline({"name": "vision.resnet", "model": "resnet18"}, MULTI_CROP, DINO_HEAD),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(RUNS))
def exported(request: pytest.FixtureRequest, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny run, its encoder, and its timm export."""
    base = tmp_path_factory.mktemp(request.param)
    ssl_core.run(RUNS[request.param](), root=str(images), out=base / "run")
    result = export(base / "run", "timm", base / "timm")
    return request.param, ssl_core.load_encoder(base / "run").encoder.eval(), result


def timm_input(images: Any, config: dict[str, Any]) -> torch.Tensor:
    """What timm's data pipeline gives a model: RGB in [0, 1], normalised with the config's mean and std."""
    mean = torch.tensor(config["pretrained_cfg"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["pretrained_cfg"]["std"]).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def largest_difference(encoder: Any, model: Any, images: torch.Tensor, config: dict[str, Any]) -> float:
    """Pooled features and every block's output (CLS first) of plain timm against our encoder."""
    with torch.no_grad():
        ours = encoder({"x": images})
        pooled = model(timm_input(images, config))
        worst = float((pooled - ours.pooled).abs().max())
        if ours.layers:
            states = model.forward_intermediates(
                timm_input(images, config), return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
            )
            assert len(states) == len(ours.layers) == config["model_args"]["depth"]
            for (patches, cls), layer in zip(states, ours.layers, strict=True):
                worst = max(worst, float((torch.cat([cls, patches], dim=1) - layer).abs().max()))
    return worst


def test_plain_timm_loads_the_export_and_matches_the_encoder(exported: Any) -> None:
    name, encoder, result = exported
    folder = Path(result.path)
    assert result.max_abs_diff <= 1e-5 and sorted(result.files) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == result.details["architecture"] and config["num_classes"] == 0
    assert config["num_features"] == encoder.embed_dim
    assert config["ssl_export"]["encoder"] == "vision." + name.split("-")[1]
    overlay = {**config["pretrained_cfg"], "file": str(folder / "model.safetensors")}
    model = timm.create_model(config["architecture"], pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=overlay, **config["model_args"]).eval()  # fmt: skip
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert largest_difference(encoder, model, images, config) <= 1e-5
    if name.endswith("vit"):  # the position table is resampled the same way for other sizes (DINO's local crops)
        assert config["model_args"]["dynamic_img_size"] is True
        assert largest_difference(encoder, model, images[..., :16, :16], config) <= 1e-5
    data = timm.data.resolve_data_config({}, model=model)
    assert list(data["mean"]) == config["pretrained_cfg"]["mean"] == [0.485, 0.456, 0.406]
    assert tuple(data["input_size"]) == (3, 32, 32)


def test_the_head_has_the_classes_the_user_asks_for(exported: Any) -> None:
    name, encoder, result = exported
    folder = Path(result.path)
    config = json.loads((folder / "config.json").read_text())
    # the form in the issue: the registry's pretrained_cfg with our file; a new 7-way head
    model = timm.create_model(config["architecture"], pretrained=True, num_classes=7,
                              pretrained_cfg_overlay={"file": str(folder / "model.safetensors")},
                              **config["model_args"]).eval()  # fmt: skip
    head = model.get_classifier()
    assert isinstance(head, torch.nn.Linear) and head.out_features == 7
    prefix = "vit." if name.endswith("vit") else "net."
    ours = {k[len(prefix) :]: v for k, v in encoder.state_dict().items()}
    theirs = model.state_dict()
    head_keys = {k for k in theirs if k.startswith(config["pretrained_cfg"]["classifier"] + ".")}
    assert set(theirs) - set(ours) == head_keys and set(ours) <= set(theirs)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    # the documented form: our pretrained_cfg (no classes) with the file; any head size, 1000 too
    overlay = {**config["pretrained_cfg"], "file": str(folder / "model.safetensors")}
    documented = timm.create_model(config["architecture"], pretrained=True, num_classes=1000,
                                   pretrained_cfg_overlay=overlay, **config["model_args"])  # fmt: skip
    assert documented.get_classifier().out_features == 1000
    assert all(torch.equal(documented.state_dict()[k], ours[k]) for k in ours)
    if result.details["checked_via"] == "local-dir":  # timm with the local-dir: prefix reads config.json alone
        local = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=7)
        assert local.get_classifier().out_features == 7
        assert all(torch.equal(local.state_dict()[k], ours[k]) for k in ours)


def test_encoders_without_a_timm_twin_name_the_formats_that_fit(images: Path, tmp_path: Path) -> None:
    cfg = {"name": "mlp", "data": {"name": "core.digits"}, "views": {"name": "core.noise"},
           "encoder": {"name": "core.mlp", "hidden_dim": 16, "embed_dim": 8},
           "objective": {"name": "core.simclr", "hidden_dim": 16, "proj_dim": 8},
           "train": {**TRAIN, "batch_size": 32}, **QUIET}  # fmt: skip
    ssl_core.run(cfg, out=tmp_path / "run")
    expected = (r"format 'timm' does not fit encoder 'core.mlp' \(vision.timm: timm export takes "
                r"vision.vit and vision.resnet .*not core.mlp\); this encoder exports to: .*safetensors")  # fmt: skip
    with pytest.raises(ExportError, match=expected):
        export(tmp_path / "run", "timm", tmp_path / "timm")
    resnet = pipeline({"name": "vision.resnet", "model": "resnet18", "cifar_stem": True}, MULTI_CROP, DINO_HEAD)
    source = ExportSource(ResNetEncoder("resnet18", cifar_stem=True), load_config(resnet), image_folder(str(images)))
    why = TimmExporter().supports(source)
    assert why is not None and "cifar_stem=true" in why
    assert ssl_core.export_formats(source)["timm"] == f"vision.timm: {why}"
