"""Export ``vision.vit`` and ``vision.resnet`` encoders to timm: ``ssl export RUN --to timm --out DIR``.

The folder holds ``model.safetensors`` (the weights under timm's own key names, no
classifier) and ``config.json`` in the layout timm writes and reads for Hub and local
models (``architecture``, ``num_classes``, ``num_features``, ``global_pool``,
``model_args``, ``pretrained_cfg``), plus an ``ssl_export`` block saying where the
weights came from. timm loads it with any ``num_classes`` (the head is new)::

    import json, timm
    config = json.load(open("DIR/config.json"))
    model = timm.create_model(config["architecture"], pretrained=True, num_classes=10, **config["model_args"],
                              pretrained_cfg_overlay={**config["pretrained_cfg"], "file": "DIR/model.safetensors"})

or, with a timm that knows the ``local-dir:`` prefix (:func:`reads_local_dirs`),
``timm.create_model("local-dir:DIR", pretrained=True, num_classes=10)``.

Our encoders take ``uint8`` images (or floats in ``[0, 1]``) and normalise them inside;
a timm model takes the normalised image, so ``pretrained_cfg`` carries our ``mean`` and
``std`` and timm's data pipeline (``timm.data.resolve_data_config`` /
``create_transform``) applies them. Pooling is the same as timm's: the CLS token after
the final norm for ViTs (``global_pool="token"``), the global average for ResNets.
:meth:`TimmExporter.export` rebuilds the model from the written files and checks its
pooled features and each block's output against our encoder's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ssl_core import ExportError, ExportResult, ExportSource, feature_tensors, max_abs_diff

from ._encoders import VIT_PRESETS, ResNetEncoder, ViTEncoder

__all__ = ["TIMM_ENCODERS", "TimmArchitecture", "TimmExporter", "timm_architecture", "timm_outputs"]

TIMM_ENCODERS = ("vision.vit", "vision.resnet")
"""The encoders that export to timm."""

_WEIGHTS, _CONFIG = "model.safetensors", "config.json"


@dataclass(frozen=True)
class TimmArchitecture:
    """The timm model an encoder is: ``timm.create_model(name, num_classes=0, **model_args)`` builds it.

    ``weights`` is the encoder's state dict under timm's key names; ``first_conv`` and
    ``classifier`` name the input convolution and the (absent) head, as in timm's
    ``pretrained_cfg``.
    """

    name: str
    model_args: dict[str, Any]
    weights: dict[str, Tensor]
    first_conv: str
    classifier: str
    pooled: str
    """How ``pooled`` is formed, in words (written to ``config.json``)."""
    layers: str = ""
    """What ``layer_1`` ... ``layer_L`` are, in words; empty when the encoder returns no layers."""


def _without_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    kept = {name[len(prefix) :]: tensor for name, tensor in state.items() if name.startswith(prefix)}
    return {name: tensor.detach().contiguous().clone() for name, tensor in kept.items()}


def _vit_name(embed_dim: int, patch_size: int, image_size: int) -> str:
    """The closest registered timm ViT name (the entry point; ``model_args`` fix every size)."""
    import timm

    preset = min(VIT_PRESETS, key=lambda p: abs(VIT_PRESETS[p]["embed_dim"] - embed_dim))
    candidates = (
        f"vit_{preset}_patch{patch_size}_{image_size}",
        f"vit_{preset}_patch{patch_size}_224",
        f"vit_{preset}_patch16_224",
    )
    return next((name for name in candidates if timm.is_model(name)), "vit_base_patch16_224")


def _vit_architecture(encoder: ViTEncoder) -> TimmArchitecture:
    vit: Any = encoder.vit
    first_block = vit.blocks[0]
    embed_dim = int(encoder.embed_dim)
    model_args = {
        "img_size": int(encoder.image_size),
        "patch_size": int(encoder.patch_size),
        "embed_dim": embed_dim,
        "depth": len(vit.blocks),
        "num_heads": int(first_block.attn.num_heads),
        "mlp_ratio": first_block.mlp.fc1.out_features / embed_dim,
        "dynamic_img_size": True,
        "global_pool": "token",
    }
    return TimmArchitecture(
        name=_vit_name(embed_dim, int(encoder.patch_size), int(encoder.image_size)),
        model_args=model_args,
        weights=_without_prefix(encoder.state_dict(), "vit."),
        first_conv="patch_embed.proj",
        classifier="head",
        pooled="the CLS token after the final norm (global_pool='token')",
        layers="each block's output [B, 1 + patches, D], CLS first, before the final norm",
    )


def _resnet_architecture(encoder: ResNetEncoder) -> TimmArchitecture:
    net: Any = encoder.net
    name = str(net.pretrained_cfg.get("architecture") or "")
    if not name:  # pragma: no cover - timm.create_model always records it
        raise ExportError("the ResNet does not record its timm architecture name")
    return TimmArchitecture(
        name=name,
        model_args={"global_pool": "avg"},
        weights=_without_prefix(encoder.state_dict(), "net."),
        first_conv="conv1",
        classifier="fc",
        pooled="the global average of the last stage's map (global_pool='avg')",
    )


def _has_cifar_stem(encoder: ResNetEncoder) -> bool:
    return isinstance(getattr(encoder.net, "maxpool", None), nn.Identity)


def unsupported_reason(source: ExportSource) -> str | None:
    """``None`` when ``source``'s encoder has a timm architecture; otherwise one line saying why not."""
    takes = f"timm export takes {' and '.join(TIMM_ENCODERS)} (ResNets without the CIFAR stem)"
    encoder = source.encoder
    if source.encoder_name not in TIMM_ENCODERS or not isinstance(encoder, ViTEncoder | ResNetEncoder):
        return f"{takes}, not {source.encoder_name}"
    if isinstance(encoder, ResNetEncoder) and _has_cifar_stem(encoder):
        return f"{takes}: timm's ResNet has no 3x3 stride-1 stem without max-pool (cifar_stem=true)"
    return None


def timm_architecture(source: ExportSource) -> TimmArchitecture:
    """The timm architecture, arguments and weights of ``source``'s encoder.

    Raises:
        ExportError: the encoder has no timm equivalent (see :func:`unsupported_reason`).

    Example:
        >>> arch = timm_architecture(source)  # doctest: +SKIP
        >>> arch.name, arch.model_args["img_size"]  # doctest: +SKIP
        ('vit_tiny_patch16_224', 32)
    """
    why = unsupported_reason(source)
    if why is not None:
        raise ExportError(why)
    encoder = source.encoder
    if isinstance(encoder, ViTEncoder):
        return _vit_architecture(encoder)
    assert isinstance(encoder, ResNetEncoder)  # unsupported_reason() took every other encoder
    return _resnet_architecture(encoder)


def _decimals(values: Tensor) -> list[float]:
    """float32 values as the shortest decimals that round to them (0.485, not 0.4850000143)."""
    return [float(f"{v:.7g}") for v in values.flatten().tolist()]


def timm_config(arch: TimmArchitecture, source: ExportSource, input_size: tuple[int, ...]) -> dict[str, Any]:
    """timm's ``config.json`` for ``arch``: what ``local-dir:`` / ``hf-hub:`` loading reads, our provenance too."""
    from importlib.metadata import version

    normalize: Any = getattr(source.encoder, "normalize")  # noqa: B009
    pretrained_cfg = {
        "architecture": arch.name,
        "custom_load": False,
        "input_size": list(input_size),
        "fixed_input_size": False,
        "interpolation": "bilinear",  # the datasets resize images to a square, antialiased bilinear
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": _decimals(normalize.mean),
        "std": _decimals(normalize.std),
        "num_classes": 0,
        "first_conv": arch.first_conv,
        "classifier": arch.classifier,
        "description": f"{source.encoder_name} pretrained with {source.config.objective.name} (ssl-vision)",
    }
    return {
        "architecture": arch.name,
        "num_classes": 0,
        "num_features": int(getattr(source.encoder, "embed_dim")),  # noqa: B009
        "global_pool": arch.model_args["global_pool"],
        "model_args": arch.model_args,
        "pretrained_cfg": pretrained_cfg,
        "ssl_export": {
            "encoder": source.encoder_name,
            "params": dict(source.config.encoder.params),
            "objective": source.config.objective.name,
            "ssl_vision_version": version("ssl-vision"),
            "input": "RGB scaled to [0, 1], then (x - mean) / std with pretrained_cfg's mean and std",
            "pooled": arch.pooled,
            "layers": arch.layers,
        },
    }


def reads_local_dirs() -> bool:
    """Whether the installed timm loads ``timm.create_model("local-dir:PATH")`` (recent timm 1.0 releases do)."""
    try:
        from timm.models import parse_model_name

        return parse_model_name("local-dir:/a")[0] == "local-dir"
    except (ImportError, ValueError, AssertionError):
        return False


def load_timm_export(folder: str | Path, num_classes: int = 0) -> tuple[nn.Module, str]:
    """The exported folder as a timm model with a ``num_classes`` head, and how it was loaded.

    Through ``local-dir:`` where timm has it, else through ``pretrained_cfg_overlay``.

    Example:
        >>> model, how = load_timm_export("exports/vit", num_classes=10)  # doctest: +SKIP
        >>> how  # doctest: +SKIP
        'local-dir'
    """
    import timm

    folder = Path(folder)
    if reads_local_dirs():
        return timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=num_classes), "local-dir"
    config = json.loads((folder / _CONFIG).read_text())
    overlay = {**config["pretrained_cfg"], "file": str(folder / _WEIGHTS)}
    model = timm.create_model(
        config["architecture"],
        pretrained=True,
        num_classes=num_classes,
        pretrained_cfg_overlay=overlay,
        **config["model_args"],
    )
    return model, "pretrained_cfg_overlay"


def timm_outputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """A timm model's ``pooled`` features and, for ViTs, ``layer_1`` ... (each block's output, CLS first).

    ``images`` are normalised. Uses ``forward_intermediates`` where the model has it,
    forward hooks on its blocks otherwise.

    Example:
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=0)
        >>> {k: tuple(v.shape) for k, v in timm_outputs(vit.eval(), torch.zeros(1, 3, 32, 32)).items()}
        {'pooled': (1, 192), 'layer_1': (1, 17, 192), 'layer_2': (1, 17, 192)}
    """
    named: dict[str, Tensor] = {}
    blocks: Any = getattr(model, "blocks", None)
    with torch.no_grad():
        named["pooled"] = model(images)
        if blocks is None:
            return named
        forward_intermediates: Callable[..., Any] | None = getattr(model, "forward_intermediates", None)
        if forward_intermediates is not None:
            states = forward_intermediates(images, return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True)
            layers = [torch.cat([prefix, patches], dim=1) for patches, prefix in states]
        else:  # pragma: no cover - timm before forward_intermediates
            layers = []
            handles = [b.register_forward_hook(lambda _m, _i, out: layers.append(out)) for b in blocks]
            try:
                model(images)
            finally:
                for handle in handles:
                    handle.remove()
    named.update({f"layer_{number}": layer for number, layer in enumerate(layers, start=1)})
    return named


class TimmExporter:
    """``timm``: a ViT or ResNet encoder as a timm model folder (``model.safetensors`` + ``config.json``).

    Example:
        >>> result = ssl_core.export("runs/mae", "timm", "exports/vit")  # doctest: +SKIP
        >>> result.details["architecture"], result.max_abs_diff <= 1e-5  # doctest: +SKIP
        ('vit_tiny_patch16_224', True)
    """

    format: ClassVar[str] = "timm"

    def supports(self, source: ExportSource) -> str | None:
        return unsupported_reason(source)

    def export(self, source: ExportSource, out: Path) -> ExportResult:
        from safetensors.torch import save_file

        arch = timm_architecture(source)
        batch = source.example_batch()
        images: Tensor = batch["x"]
        out.mkdir(parents=True, exist_ok=True)
        save_file(arch.weights, str(out / _WEIGHTS), metadata={"format": "pt"})
        config = timm_config(arch, source, tuple(images.shape[1:]))
        (out / _CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        model, loaded_via = load_timm_export(out, num_classes=0)
        normalize: Any = getattr(source.encoder, "normalize")  # noqa: B009
        theirs = timm_outputs(model.float().eval(), normalize(images))
        difference = max_abs_diff(feature_tensors(source.features(batch)), theirs)
        return ExportResult(
            format=self.format,
            path=str(out),
            files=[_CONFIG, _WEIGHTS],
            max_abs_diff=difference,
            load=_loading_snippet(out),
            details={"architecture": arch.name, "model_args": arch.model_args, "checked_via": loaded_via},
        )


def _loading_snippet(out: Path) -> str:
    folder = str(out)
    return (
        "import json, timm\n"
        f"config = json.load(open({str(out / _CONFIG)!r}))\n"
        "model = timm.create_model(config['architecture'], pretrained=True, num_classes=10, **config['model_args'],\n"
        f"    pretrained_cfg_overlay={{**config['pretrained_cfg'], 'file': {str(out / _WEIGHTS)!r}}})\n"
        f"# or, where timm reads local-dir: timm.create_model('local-dir:{folder}', pretrained=True, num_classes=10)"
    )
