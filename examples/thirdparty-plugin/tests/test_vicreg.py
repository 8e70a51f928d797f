"""Tests of the example plugin: ssl-core's conformance kit, the pure loss, and a pipeline built by name."""

from __future__ import annotations

import pytest
import torch
from ssl_example_vicreg import VICRegObjective, covariance_loss, invariance_loss, variance_loss, vicreg_loss
from torch import nn

from ssl_core import Registry, Views, build_pipeline, default_registry, load_config
from ssl_core.testing import ObjectiveConformance

# ssl-core's own small components, through the public registry (what a pipeline file names)
MLPEncoder = default_registry().get("encoder", "core.mlp")
NoiseViews = default_registry().get("views", "core.noise")
digits = default_registry().get("dataset", "core.digits")

pytest_plugins = ["ssl_core.testing.fixtures"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class TestVICRegConformance(ObjectiveConformance):
    """Against the kit's toy encoder and toy views (the defaults)."""

    def make_objective(self, embed_dim: int) -> nn.Module:
        return VICRegObjective(embed_dim, expander_dim=64)


class TestVICRegOnCoreMLP(ObjectiveConformance):
    """Against a real encoder and real views from ssl-core, with three views."""

    def make_objective(self, embed_dim: int) -> nn.Module:
        return VICRegObjective(embed_dim, expander_dim=64)

    def make_encoder(self) -> nn.Module:
        return MLPEncoder(in_dim=64, hidden_dim=32, embed_dim=32)

    def make_views(self) -> Views:
        batch = {"x": torch.rand(32, 64, generator=torch.Generator().manual_seed(0))}
        return NoiseViews(num_views=3)(batch, torch.Generator().manual_seed(0))


def test_paper_defaults() -> None:
    objective = VICRegObjective(embed_dim=8, expander_dim=16)
    assert (objective.sim_coeff, objective.std_coeff, objective.cov_coeff) == (25.0, 25.0, 1.0)
    linears = [m for m in objective.expander if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [16, 16, 16]
    assert VICRegObjective.__init__.__defaults__[0] == 8192  # type: ignore[index]


def test_terms_behave_as_in_the_paper() -> None:
    gen = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(512, 8, generator=gen)
    assert float(invariance_loss(z, z)) == 0.0
    assert float(variance_loss(z)) == 0.0  # every std is about 2, above the hinge at 1
    assert float(variance_loss(torch.zeros(16, 8))) == pytest.approx(0.99)
    correlated = torch.cat([z[:, :1]] * 8, dim=1)
    assert float(covariance_loss(correlated)) > 100 * float(covariance_loss(z))


def test_loss_is_the_weighted_sum_of_the_terms() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 4, generator=gen), torch.randn(64, 4, generator=gen)
    expected = (
        25 * invariance_loss(a, b)
        + 25 * (variance_loss(a) + variance_loss(b)) / 2
        + (covariance_loss(a) + covariance_loss(b))
    )
    assert torch.allclose(vicreg_loss(a, b), expected)
    only_covariance = vicreg_loss(a, b, sim_coeff=0, std_coeff=0, cov_coeff=1)
    assert torch.allclose(only_covariance, covariance_loss(a) + covariance_loss(b))


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least 2 views"):
        VICRegObjective(embed_dim=4, expander_dim=8)(MLPEncoder(in_dim=3, embed_dim=4), Views(batches=[{}]))


def test_pipeline_fills_embed_dim_from_the_encoder(ssl_registry: Registry) -> None:
    ssl_registry.register("dataset", "core.digits", digits)
    ssl_registry.register("encoder", "core.mlp", MLPEncoder)
    ssl_registry.register("views", "core.noise", NoiseViews)
    ssl_registry.register("objective", "example.vicreg", VICRegObjective)
    cfg = load_config(
        {
            "data": {"name": "core.digits"},
            "encoder": {"name": "core.mlp", "embed_dim": 24, "hidden_dim": 24},
            "views": {"name": "core.noise"},
            "objective": {"name": "example.vicreg", "expander_dim": 32},
        }
    )
    built = build_pipeline(cfg, ssl_registry)
    first = built.objective.expander[0]
    assert isinstance(first, nn.Linear) and first.in_features == 24
