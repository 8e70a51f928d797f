"""Image encoders: a timm Vision Transformer that drops masked patches, and timm ResNets.

Both take ``batch["x"]`` as ``uint8`` images ``[B, 3, H, W]`` (what the datasets yield)
or float images in ``[0, 1]`` (what the views yield) and normalise them with their own
``mean``/``std``, so evaluation batches and augmented views go through the same path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ssl_core import EncoderBase, Features

if TYPE_CHECKING:
    from timm.layers.attention import Attention
    from timm.models.vision_transformer import Block

__all__ = [
    "VIT_PRESETS",
    "ResNetEncoder",
    "ViTEncoder",
    "sincos_pos_embed_2d",
    "to_unit_float",
    "use_explicit_attention",
]

VIT_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
"""ViT widths as in timm (``vit_{tiny,small,base,large}_*``); image and patch size are separate."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(images: Tensor) -> Tensor:
    """``uint8`` images become float in ``[0, 1]``; float images pass through.

    Example:
        >>> to_unit_float(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)).max().item()
        1.0
    """
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images


def use_explicit_attention(blocks: nn.Module, x: Tensor, attention: str) -> None:
    """Pick timm's attention path for ``x``: ``"explicit"`` (matmul, softmax, matmul) or ``"fused"`` (SDPA).

    ``"auto"`` takes the explicit path on CPU under bf16/fp16 autocast for sequences up to
    256 tokens: there PyTorch's fused CPU kernel's backward is about ten times slower than
    two batched matmuls (docs/vision.md). In float32 and on GPUs (flash attention) the fused
    kernel is as fast or faster and is kept.
    """
    device = x.device.type
    low_precision = x.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled(device)
    auto = device == "cpu" and low_precision and x.shape[-2] <= 256
    explicit = auto if attention == "auto" else attention == "explicit"
    for module in blocks.modules():
        if hasattr(module, "fused_attn"):
            setattr(module, "fused_attn", not explicit)  # noqa: B010 - a timm attribute, not a module


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int], prefix_tokens: int = 1) -> Tensor:
    """MAE's fixed 2-D sine-cosine position table ``[1, prefix + h * w, dim]`` (prefix rows zero).

    Example:
        >>> sincos_pos_embed_2d(8, (2, 2)).shape
        torch.Size([1, 5, 8])
    """
    if dim % 4:
        raise ValueError(f"the sine-cosine table needs a width divisible by 4, got {dim}")
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(xs), encode(ys)], dim=1)  # MAE order: width half first, then height
    table = torch.cat([torch.zeros(prefix_tokens, dim, dtype=torch.float64), table])
    return table.float().unsqueeze(0)


class _Normalize(nn.Module):
    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected images [B, {self.mean.shape[1]}, H, W], got shape {tuple(images.shape)}; "
                "image datasets convert grayscale and RGBA files to RGB"
            )
        return (to_unit_float(images) - self.mean) / self.std


class ViTEncoder(EncoderBase):
    """A timm ``VisionTransformer`` whose forward drops masked patch tokens before the blocks.

    ``token_mask`` (``[B, num_patches]``, ``True`` = masked) must mask the same number of
    patches in every row (MAE's random masking does); the kept tokens stay in patch
    order. Images of another size than ``image_size`` (DINO's local crops) get the
    position table resampled by timm. Returns the CLS token after the final norm as
    ``pooled``, the normed patch tokens as ``tokens`` and each block's output as ``layers``;
    ``pooled_only=True`` returns ``pooled`` alone and runs the last block for the CLS token
    only (DINO asks for this: 4-10% less time per forward and backward on ViT-Tiny/4).

    Args:
        preset: ``"tiny"``, ``"small"``, ``"base"`` or ``"large"`` (widths of timm's ViTs).
        image_size: the side of the (square) training images; filled from the dataset.
        patch_size: the side of a patch; must divide ``image_size``.
        pos_embed: ``"learned"`` (timm's default) or ``"sincos"`` (MAE's fixed table).
        attention: ``"auto"``, ``"explicit"`` or ``"fused"`` (see :func:`use_explicit_attention`).
        weight_init: ``"timm"`` (truncated normal) or ``"mae"`` (MAE's Xavier-uniform scheme).

    Example:
        >>> enc = ViTEncoder(preset="tiny", image_size=32, patch_size=8, depth=2)
        >>> out = enc({"x": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)},
        ...           token_mask=torch.tensor([[True, False] * 8] * 2))
        >>> tuple(out.pooled.shape), tuple(out.tokens.shape)
        ((2, 192), (2, 8, 192))
    """

    modality: ClassVar[str] = "image"
    supports_token_mask: ClassVar[bool] = True
    returns_tokens: ClassVar[bool] = True
    returns_layers: ClassVar[bool] = True
    pools_only_on_request: ClassVar[bool] = True  # forward(..., pooled_only=True): the CLS vector alone, cheaper

    def __init__(
        self,
        preset: str = "tiny",
        image_size: int = 224,
        patch_size: int = 16,
        *,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pos_embed: str = "learned",
        attention: str = "auto",
        weight_init: str = "timm",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if preset not in VIT_PRESETS:
            raise ValueError(f"unknown ViT preset {preset!r}; choose one of {', '.join(VIT_PRESETS)}")
        if image_size % patch_size:
            raise ValueError(
                f"image size {image_size} is not divisible by patch size {patch_size}; resize the images "
                f"(the dataset's image_size option) or choose a patch size that divides {image_size}"
            )
        if weight_init not in ("timm", "mae"):
            raise ValueError(f"weight_init must be 'timm' or 'mae', got {weight_init!r}")
        if attention not in ("auto", "explicit", "fused"):
            raise ValueError(f"attention must be 'auto', 'explicit' or 'fused', got {attention!r}")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        dims = {**VIT_PRESETS[preset]}
        for key, value in (("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            if value is not None:
                dims[key] = value
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            num_classes=0,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            dynamic_img_size=True,
            embed_dim=dims["embed_dim"],
            depth=dims["depth"],
            num_heads=dims["num_heads"],
        )
        self.normalize = _Normalize(mean, std)
        self.embed_dim = dims["embed_dim"]
        self.image_size, self.patch_size, self.attention = image_size, patch_size, attention
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        if weight_init == "mae":
            self._mae_init()
        if pos_embed == "sincos":
            with torch.no_grad():
                self._positions().copy_(sincos_pos_embed_2d(self.embed_dim, self.grid))
            self._positions().requires_grad_(False)

    @torch.no_grad()
    def _mae_init(self) -> None:
        """MAE's initialisation: Xavier-uniform linear layers and patch projection, zero biases, CLS ~ N(0, 0.02)."""
        for module in self.vit.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.vit.patch_embed.proj.weight
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        if self.vit.cls_token is not None:
            nn.init.normal_(self.vit.cls_token, std=0.02)

    def _positions(self) -> Tensor:
        pos = self.vit.pos_embed
        if pos is None:  # pragma: no cover - timm builds it for every absolute-position ViT
            raise RuntimeError("the timm ViT has no absolute position table")
        return pos

    def _patch_tokens(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"image size {h}x{w} is not divisible by patch size {self.patch_size}; "
                f"use crops whose sides are multiples of {self.patch_size}"
            )
        x = self.vit.patch_embed.proj(images)  # [B, D, h, w]
        grid = (x.shape[-2], x.shape[-1])
        x = self.vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
        pos = self._positions()
        if grid != self.grid:
            from timm.layers.pos_embed import resample_abs_pos_embed

            pos = resample_abs_pos_embed(pos, list(grid), list(self.grid), num_prefix_tokens=1)
        return x + pos[:, 1:], grid

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None, pooled_only: bool = False) -> Features:
        images = self.normalize(batch["x"])
        x, grid = self._patch_tokens(images)
        b, n, d = x.shape
        if token_mask is not None:
            if token_mask.shape != (b, n):
                raise ValueError(
                    f"token_mask has shape {tuple(token_mask.shape)} but the {grid[0]}x{grid[1]} patch grid "
                    f"needs [{b}, {n}]; the views' patch_size must match the encoder's ({self.patch_size})"
                )
            kept = (~token_mask).sum(1)
            if bool((kept != kept[0]).any()):
                raise ValueError("token_mask must keep the same number of patches in every row")
            x = x[~token_mask].view(b, int(kept[0]), d)
        cls_token = self.vit.cls_token
        if cls_token is None:  # pragma: no cover - built with class_token=True
            raise RuntimeError("the timm ViT has no class token")
        cls = (cls_token + self._positions()[:, :1]).expand(b, -1, -1)
        x = self.vit.norm_pre(torch.cat([cls, x], dim=1))
        use_explicit_attention(self.vit.blocks, x, self.attention)
        blocks: list[Block] = list(self.vit.blocks)  # type: ignore[arg-type]
        if pooled_only:  # the CLS token's output needs the last block for the CLS token only
            for block in blocks[:-1]:
                x = block(x)
            return Features(pooled=self.vit.norm(_cls_only_block(blocks[-1], x))[:, 0])
        layers = []
        for block in blocks:
            x = block(x)
            layers.append(x)
        x = self.vit.norm(x)
        return Features(pooled=x[:, 0], tokens=x[:, 1:], layers=tuple(layers))


def _cls_only_block(block: Block, x: Tensor) -> Tensor:
    """A timm ``Block`` applied to ``x`` ``[B, N, D]`` whose output is wanted for the first token only.

    Keys and values come from every token; the query, the attention output, the projection
    and the MLP run for the first token: the last block costs about 1/N of its full cost
    apart from the key/value projection. Equal to ``block(x)[:, :1]`` up to rounding.
    """
    attn = cast("Attention", block.attn)
    h = block.norm1(x)
    b, n, d = h.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = int(getattr(attn, "attn_dim", d))  # older timm 1.0 releases have no attn_dim, norm or gate
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, :1], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(h, weight[width:], None if bias is None else bias[width:])
    q = attn.q_norm(q.view(b, 1, heads, head_dim).transpose(1, 2))
    k, v = kv.view(b, n, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    k = attn.k_norm(k)
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout).transpose(1, 2).reshape(b, 1, width)
    out = getattr(attn, "norm", nn.Identity())(out)
    gate: nn.Module | None = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(h[:, :1]).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    cls: Tensor = x[:, :1] + block.drop_path1(block.ls1(out))
    cls = cls + block.drop_path2(block.ls2(block.mlp(block.norm2(cls))))
    return cls


class ResNetEncoder(EncoderBase):
    """A timm ResNet without its classifier; ``pooled`` is the global-average-pooled map.

    ``cifar_stem=True`` swaps the 7x7/2 convolution and max-pool for one 3x3/1 convolution,
    the usual change for 32-pixel images (SimCLR, solo-learn).

    Example:
        >>> enc = ResNetEncoder("resnet18", cifar_stem=True)
        >>> enc({"x": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)}).pooled.shape
        torch.Size([2, 512])
    """

    modality: ClassVar[str] = "image"

    def __init__(
        self,
        model: str = "resnet18",
        cifar_stem: bool = False,
        *,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        import timm

        if not model.startswith(("resnet", "resnext", "wide_resnet", "seresnet")):
            raise ValueError(f"ResNetEncoder takes a timm ResNet name (resnet18, resnet50, ...), got {model!r}")
        self.net = timm.create_model(model, pretrained=False, num_classes=0)
        if cifar_stem:
            width = int(getattr(self.net.conv1, "out_channels"))  # noqa: B009
            self.net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.net.maxpool = nn.Identity()
        self.normalize = _Normalize(mean, std)
        self.embed_dim = int(getattr(self.net, "num_features"))  # noqa: B009

    def forward(self, batch: dict[str, Any], token_mask: Tensor | None = None) -> Features:
        return Features(pooled=self.net(self.normalize(batch["x"])))
