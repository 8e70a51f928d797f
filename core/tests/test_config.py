"""Pipeline files: validation with close-match suggestions, overrides, component checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_core import (
    ComponentNotFoundError,
    ConfigError,
    IncompatibleComponentsError,
    Registry,
    build_pipeline,
    load_config,
)
from ssl_core._bases import ObjectiveBase

BASE: dict[str, Any] = {
    "data": {"name": "core.digits"},
    "encoder": {"name": "core.mlp"},
    "views": {"name": "core.noise"},
    "objective": {"name": "core.simclr"},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_overrides_are_parsed_as_toml_values() -> None:
    cfg = load_config(
        BASE,
        [
            "train.steps=7",
            "train.lr=0.5",
            "train.compile=true",
            "encoder.embed_dim=16",
            "train.precision=bf16",
            "evaluate=[{name='core.knn', k=[5]}]",
        ],
    )
    assert (cfg.train.steps, cfg.train.lr, cfg.train.compile, cfg.train.precision) == (7, 0.5, True, "bf16")
    assert cfg.encoder.params == {"embed_dim": 16}
    assert cfg.evaluate[0].name == "core.knn" and cfg.evaluate[0].params == {"k": [5]}


@pytest.mark.parametrize(
    ("raw", "overrides", "message"),
    [
        (with_(trian={"steps": 3}), [], "unknown key 'trian' in the pipeline; did you mean 'train'"),
        (BASE, ["train.stpes=3"], "unknown key 'stpes' in \\[train\\]; did you mean 'steps'"),
        (BASE, ["train.steps=many"], "train.steps must be an integer"),
        (BASE, ["train.precision=fp8"], "train.precision must be one of 'fp32', 'bf16', 'fp16', 'auto'"),
        (BASE, ["train.batch_size=0"], "train.batch_size must be at least 1"),
        ({k: v for k, v in BASE.items() if k != "views"}, [], "needs a \\[views\\] table"),
        (with_(encoder={"embed_dim": 3}), [], "\\[encoder\\] needs a 'name' key"),
        (BASE, ["trainsteps"], "must look like key.path=value"),
    ],
)
def test_bad_configs_say_what_to_fix(raw: dict[str, Any], overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(raw, overrides)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_unknown_component_and_parameter_name_the_closest() -> None:
    with pytest.raises(ComponentNotFoundError, match=r"did you mean 'core\.simclr'"):
        build_pipeline(load_config(with_(objective={"name": "core.simclir"})))
    with pytest.raises(ConfigError, match=r"'core\.mlp' has no parameter 'embed_dims'; did you mean 'embed_dim'"):
        build_pipeline(load_config(with_(encoder={"name": "core.mlp", "embed_dims": 8})))


def test_embed_dim_and_input_size_are_injected() -> None:
    built = build_pipeline(load_config(with_(encoder={"name": "core.mlp", "embed_dim": 24})))
    assert built.encoder.in_dim == 64  # from the dataset's info
    assert built.objective.head[0].in_features == 24  # from the encoder


class _NeedsTokens(ObjectiveBase):
    requires_tokens = True

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(embed_dim, 1)

    def forward(self, encoder: torch.nn.Module, views: Any) -> dict[str, torch.Tensor]:
        raise AssertionError("must be rejected before training")


def test_incompatible_mix_is_rejected_before_training_naming_both() -> None:
    registry = Registry()
    registry.register("objective", "test.tokens", _NeedsTokens)
    with pytest.raises(IncompatibleComponentsError) as info:
        build_pipeline(load_config(with_(objective={"name": "test.tokens"})), registry)
    text = str(info.value)
    assert "'test.tokens'" in text and "'core.mlp'" in text and "per-token features" in text


def test_views_of_another_modality_are_rejected() -> None:
    class ImageViews:
        modality = "image"

        def __call__(self, batch: Any, generator: torch.Generator) -> Any: ...

    registry = Registry()
    registry.register("views", "test.image", ImageViews)
    with pytest.raises(
        IncompatibleComponentsError, match=r"expect image batches but dataset 'core\.digits' yields vector"
    ):
        build_pipeline(load_config(with_(views={"name": "test.image"})), registry)


def test_views_producing_another_modality_are_rejected_naming_encoder_and_views() -> None:
    class ToImages:
        modality = "vector"
        output_modality = "image"

        def __call__(self, batch: Any, generator: torch.Generator) -> Any: ...

    registry = Registry()
    registry.register("views", "test.to_images", ToImages)
    with pytest.raises(IncompatibleComponentsError) as info:
        build_pipeline(load_config(with_(views={"name": "test.to_images"})), registry)
    text = str(info.value)
    assert "encoder 'core.mlp' takes vector input" in text and "views 'test.to_images' gives it image" in text
