"""The conformance kit (ssl_core.testing) run against ssl-core's own components, plus checks of the kit itself."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import ssl_core.testing as kit
from ssl_core import EncoderBase, Features, ObjectiveBase, Registry, ViewGeneratorBase, Views
from ssl_core._components import MLPEncoder, NoiseViews, SimCLRObjective, digits
from ssl_core._evaluators import KNNEvaluator, LayerWeightedProbeEvaluator, LinearProbeEvaluator
from ssl_core.testing import (
    DatasetConformance,
    EncoderConformance,
    EvaluatorConformance,
    ObjectiveConformance,
    ToyEncoder,
    ViewGeneratorConformance,
    toy_batch,
    toy_views,
)

pytest_plugins = ["ssl_core.testing.fixtures"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _vectors(batch_size: int = 16, in_dim: int = 64) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"x": torch.rand(batch_size, in_dim, generator=gen), "y": torch.arange(batch_size) % 4}


# ---------------------------------------------------------------- the core's components


class TestMLPEncoder(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return MLPEncoder(in_dim=64, hidden_dim=32, embed_dim=32, depth=2)

    def make_batch(self) -> dict[str, Any]:
        return _vectors()


class TestToyEncoder(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return ToyEncoder(in_dim=12, embed_dim=16)

    def make_batch(self) -> dict[str, Any]:
        return toy_batch(batch_size=8)


class TestNoiseViews(ViewGeneratorConformance):
    def make_views(self) -> NoiseViews:
        return NoiseViews(num_views=2, image_shape=(8, 8), max_shift=1)

    def make_batch(self) -> dict[str, Any]:
        return _vectors()


class TestSimCLROnToyEncoder(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return SimCLRObjective(embed_dim, proj_dim=16, hidden_dim=32)


class TestSimCLROnMLP(ObjectiveConformance):
    """The same objective through a real encoder and real views (overriding the defaults)."""

    def make_objective(self, embed_dim: int) -> nn.Module:
        return SimCLRObjective(embed_dim, proj_dim=16, hidden_dim=32)

    def make_encoder(self) -> nn.Module:
        return MLPEncoder(in_dim=64, hidden_dim=32, embed_dim=32)

    def make_views(self) -> Views:
        return NoiseViews(num_views=2)(_vectors(), torch.Generator().manual_seed(0))


class TestKNN(EvaluatorConformance):
    def make_evaluator(self) -> KNNEvaluator:
        return KNNEvaluator(k=[5, 20])


class TestLinearProbe(EvaluatorConformance):
    def make_evaluator(self) -> LinearProbeEvaluator:
        return LinearProbeEvaluator(epochs=20)


class TestLayerProbe(EvaluatorConformance):
    def make_evaluator(self) -> LayerWeightedProbeEvaluator:
        return LayerWeightedProbeEvaluator(epochs=3, hidden_dim=16)


class TestDigits(DatasetConformance):
    def make_provider(self) -> Any:
        return digits


# ---------------------------------------------------------------- the kit catches broken components


class _WrongWidth(EncoderBase):
    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 8
        self.proj = nn.Linear(64, 4)

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None) -> Features:
        return Features(pooled=self.proj(batch["x"]))


class _GlobalRNGViews(ViewGeneratorBase):
    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> Views:
        return Views(batches=[{**batch, "x": batch["x"] + torch.randn(batch["x"].shape)}])


class _VectorLoss(ObjectiveBase):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(embed_dim, 4)

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        z = self.head(encoder(views.batches[0]).pooled)
        return {"loss": z.square().mean(), "per_dim": z.mean(0)}


class _TensorMetrics:
    higher_is_better: ClassVar[bool] = True

    def __call__(self, encoder: Any, train: Any, test: Any) -> dict[str, Any]:
        return {"score": torch.tensor(0.5)}


class _BrokenEncoderCase(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return _WrongWidth()

    def make_batch(self) -> dict[str, Any]:
        return _vectors()


class _BrokenViewsCase(ViewGeneratorConformance):
    def make_views(self) -> _GlobalRNGViews:
        return _GlobalRNGViews()

    def make_batch(self) -> dict[str, Any]:
        return _vectors()


class _BrokenObjectiveCase(ObjectiveConformance):
    def make_objective(self, embed_dim: int) -> nn.Module:
        return _VectorLoss(embed_dim)


class _BrokenEvaluatorCase(EvaluatorConformance):
    def make_evaluator(self) -> _TensorMetrics:
        return _TensorMetrics()


@pytest.mark.parametrize(
    ("case", "test_name", "message"),
    [
        (_BrokenEncoderCase, "test_pooled_shape_and_dtype", "pooled must be"),
        (_BrokenViewsCase, "test_same_seed_gives_same_views", "same seeded generator"),
        (_BrokenObjectiveCase, "test_other_values_are_finite_scalars", "'per_dim' must be a 0-dim"),
        (_BrokenEvaluatorCase, "test_returns_finite_float_metrics", "must be a Python float"),
    ],
)
def test_kit_reports_broken_components(case: type, test_name: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        getattr(case(), test_name)()


def test_objective_kit_rejects_an_encoder_that_lacks_a_requirement() -> None:
    class NeedsTokens(_VectorLoss):
        requires_tokens: ClassVar[bool] = True

    class Case(ObjectiveConformance):
        def make_objective(self, embed_dim: int) -> nn.Module:
            return NeedsTokens(embed_dim)

        def make_encoder(self) -> nn.Module:
            return MLPEncoder(in_dim=12, hidden_dim=16, embed_dim=16)

    with pytest.raises(AssertionError, match="requires_tokens=True"):
        Case().test_returns_finite_scalar_loss_with_grad()


# ---------------------------------------------------------------- doubles, fixture, packaging


def test_toy_views_carry_masks_the_toy_encoder_accepts() -> None:
    views = toy_views(toy_batch(batch_size=4, num_tokens=5), num_views=3, mask_ratio=0.5)
    encoder = ToyEncoder()
    assert len(views) == 3 and views.masks is not None
    out = encoder(views.batches[0], token_mask=views.masks[0])
    assert out.tokens is not None and out.tokens.shape == (4, 5, 16)


def test_ssl_registry_fixture_is_empty_and_isolated(ssl_registry: Registry) -> None:
    assert all(ssl_registry.names(kind) == [] for kind in ("encoder", "objective", "evaluator", "dataset"))
    ssl_registry.register("encoder", "test.toy", ToyEncoder)
    assert ssl_registry.get("encoder", "test.toy") is ToyEncoder


def test_all_is_complete() -> None:
    public = {name for name in vars(kit) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(kit, name)).__name__ == "module"}
    assert set(kit.__all__) == public - modules
    assert all(hasattr(kit, name) for name in kit.__all__)


def test_import_ssl_core_does_not_import_the_kit_or_torch() -> None:
    code = "import sys, ssl_core; print('ssl_core.testing' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
