"""The core's own small components, so ssl-core runs a real pipeline on its own.

``core.digits`` (scikit-learn's bundled 8x8 handwritten digits, offline),
``core.mlp`` (an MLP encoder for vectors), ``core.noise`` (noise, dropout and
shift views for vectors) and ``core.simclr`` (SimCLR's NT-Xent objective, which
fits any encoder with a pooled output).

Example:
    >>> import torch
    >>> enc = MLPEncoder(in_dim=64, embed_dim=32)
    >>> enc({"x": torch.randn(4, 64)}).pooled.shape
    torch.Size([4, 32])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from ._bases import EncoderBase, ObjectiveBase, ViewGeneratorBase
from ._protocols import Batch, DatasetSplits, Features, Views
from .functional import nt_xent_loss

__all__ = ["MLPEncoder", "NoiseViews", "SimCLRObjective", "collate_tensors", "digits"]


def collate_tensors(samples: Sequence[tuple[Tensor, ...]]) -> Batch:
    """Collate ``(x, y)`` tensor pairs into ``{"x": [B, ...], "y": [B]}``."""
    xs, ys = zip(*samples, strict=False)
    return {"x": torch.stack(list(xs)), "y": torch.stack(list(ys))}


def digits(root: str | None = None, *, test_size: float = 0.3, seed: int = 0) -> DatasetSplits:
    """scikit-learn's 1,797 8x8 digit images as 64-d vectors in [0, 1]; stratified split.

    ``root`` is unused (the data ships inside scikit-learn).

    Example:
        >>> splits = digits()
        >>> len(splits.train) + len(splits.test)
        1797
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_size, random_state=seed, stratify=y.numpy()
    )
    train: Dataset[Any] = TensorDataset(x[idx_train], y[idx_train])
    test: Dataset[Any] = TensorDataset(x[idx_test], y[idx_test])
    return DatasetSplits(
        train=train,
        test=test,
        collate=collate_tensors,
        modality="vector",
        num_classes=10,
        info={"in_dim": 64, "image_shape": (8, 8), "source": "sklearn.datasets.load_digits"},
    )


class MLPEncoder(EncoderBase):
    """An MLP for vector inputs with LayerNorm (no batch statistics, so DDP-exact).

    Returns every hidden layer in ``Features.layers`` for layer-weighted probes.
    """

    modality: ClassVar[str] = "vector"
    returns_layers: ClassVar[bool] = True

    def __init__(self, in_dim: int, hidden_dim: int = 256, embed_dim: int = 128, depth: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLPEncoder depth must be at least 1, got {depth}")
        dims = [in_dim] + [hidden_dim] * (depth - 1) + [embed_dim]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()) for a, b in itertools.pairwise(dims)
        )
        self.in_dim, self.embed_dim = in_dim, embed_dim

    def forward(self, batch: Batch, token_mask: Tensor | None = None) -> Features:
        x = batch["x"]
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPEncoder expects x of shape [B, {self.in_dim}], got {tuple(x.shape)}")
        layers = []
        for block in self.blocks:
            x = block(x)
            layers.append(x)
        return Features(pooled=x, layers=tuple(layers))


class NoiseViews(ViewGeneratorBase):
    """Views of vector data: random shift (for flattened images), feature dropout and Gaussian noise.

    Args:
        num_views: copies per sample.
        noise_std: std of additive Gaussian noise.
        drop_prob: probability of zeroing each feature.
        image_shape: ``(H, W)`` when vectors are flattened images, to enable shifts.
        max_shift: largest translation in pixels (needs ``image_shape``).
    """

    modality: ClassVar[str] = "vector"

    def __init__(
        self,
        num_views: int = 2,
        noise_std: float = 0.1,
        drop_prob: float = 0.2,
        image_shape: Sequence[int] | None = None,
        max_shift: int = 0,
    ) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {num_views}")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if max_shift and image_shape is None:
            raise ValueError("max_shift needs image_shape=(H, W) to know how the vector is laid out")
        self.num_views, self.noise_std, self.drop_prob = num_views, noise_std, drop_prob
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.max_shift = max_shift

    def _shift(self, x: Tensor, generator: torch.Generator) -> Tensor:
        assert self.image_shape is not None
        h, w = self.image_shape
        b = x.shape[0]
        pad = self.max_shift
        img = nn.functional.pad(x.view(b, 1, h, w), (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
        out = img[torch.arange(b, device=x.device)[:, None, None], 0, rows, cols]
        return out.reshape(b, h * w)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Views:
        x = batch["x"]
        views = []
        for _ in range(self.num_views):
            v = self._shift(x, generator) if self.max_shift else x
            if self.drop_prob:
                keep = torch.rand(v.shape, generator=generator, device=v.device) >= self.drop_prob
                v = v * keep
            if self.noise_std:
                v = v + self.noise_std * torch.randn(v.shape, generator=generator, device=v.device)
            views.append({**batch, "x": v})
        return Views(batches=views)


class SimCLRObjective(ObjectiveBase):
    """SimCLR: a projection MLP on the pooled features and NT-Xent between views.

    Works with any encoder that returns ``Features.pooled``; negatives come from the
    global batch when running distributed.
    """

    min_views: ClassVar[int] = 2

    def __init__(self, embed_dim: int, proj_dim: int = 128, hidden_dim: int = 512, temperature: float = 0.2) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.head = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, proj_dim))
        self.temperature = temperature

    def forward(self, encoder: nn.Module, views: Views) -> dict[str, Tensor]:
        if len(views) < 2:
            raise ValueError(f"SimCLR needs at least 2 views, got {len(views)}")
        z = [self.head(encoder(v).pooled) for v in views.batches]
        losses = [
            nt_xent_loss(z[i], z[j], temperature=self.temperature) for i in range(len(z)) for j in range(i + 1, len(z))
        ]
        loss = torch.stack(losses).mean()
        with torch.no_grad():
            std = torch.nn.functional.normalize(z[0].float(), dim=1).std(dim=0).mean()
        return {"loss": loss, "embedding_std": std}
