"""tsai backbones as encoders (tsai is imported here, once, by building them)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from ssl_core.testing import EncoderConformance
from ssl_timeseries import InceptionTimeEncoder, MVPObjective, PatchTSTEncoder, SubsequenceMaskViews, TSTEncoder


def batch() -> dict[str, Any]:
    x = torch.randn(4, 32, 2)
    padding = torch.zeros(4, 32, dtype=torch.bool)
    padding[0, -4:] = True
    return {"x": x.masked_fill(padding[..., None], 0.0), "y": torch.arange(4) % 2, "padding_mask": padding}


class TestInceptionTimeConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return InceptionTimeEncoder(in_channels=2, series_length=32, nf=4, depth=2)

    def make_batch(self) -> dict[str, Any]:
        return batch()


class TestTSTConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return TSTEncoder(in_channels=2, series_length=32, d_model=16, n_layers=1, n_heads=2, d_ff=32)

    def make_batch(self) -> dict[str, Any]:
        return batch()


class TestPatchTSTConformance(EncoderConformance):
    def make_encoder(self) -> nn.Module:
        return PatchTSTEncoder(
            in_channels=2, series_length=32, patch_len=8, stride=4, d_model=16, n_layers=1, n_heads=2, d_ff=32
        )

    def make_batch(self) -> dict[str, Any]:
        return batch()


@pytest.mark.parametrize("factory", [InceptionTimeEncoder, TSTEncoder, PatchTSTEncoder])
def test_mvp_trains_any_tsai_encoder(factory: Any) -> None:
    torch.manual_seed(0)
    kwargs = (
        {"nf": 4, "depth": 2}
        if factory is InceptionTimeEncoder
        else {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
    )
    encoder = factory(in_channels=2, series_length=32, **kwargs)
    objective = MVPObjective(embed_dim=encoder.embed_dim, in_channels=2)
    views = SubsequenceMaskViews(mask_ratio=0.3)(batch(), torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW([*encoder.parameters(), *objective.parameters()], lr=3e-3)
    losses = []
    for _ in range(8):
        loss = objective(encoder, views)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
