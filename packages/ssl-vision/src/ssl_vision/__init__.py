"""Vision plugin for ssl-core: MAE and DINO on timm Vision Transformers and ResNets.

Components (entry points, loaded lazily by ssl-core): encoders ``vision.vit``,
``vision.resnet``; views ``vision.random_mask`` (MAE), ``vision.multi_crop`` (DINO);
objectives ``vision.mae``, ``vision.dino``; datasets ``vision.image_folder``,
``vision.cifar10``, ``vision.cifar100`` (in memory, or streamed from disk with
``stream=True``), ``vision.shards`` (WebDataset tar shards, ``ssl vision-shards``);
recipes ``vision.mae``, ``vision.dino``; export format ``timm`` (``vision.timm``,
``ssl export RUN --to timm``).
Importing this package does not import torchvision or timm.

Example:
    >>> import ssl_vision
    >>> "DINOObjective" in ssl_vision.__all__
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__: str = version("ssl-vision")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "ImageDataError": "_data",
    "ImageTensorDataset": "_data",
    "StreamedImageFolder": "_data",
    "cifar10": "_data",
    "cifar100": "_data",
    "collate_images": "_data",
    "decode_image": "_data",
    "decode_images": "_data",
    "image_folder": "_data",
    "ShardedImages": "_shards",
    "index_shard": "_shards",
    "sharded_images": "_shards",
    "write_shards": "_shards",
    "TimmExporter": "_export",
    "ResNetEncoder": "_encoders",
    "VIT_PRESETS": "_encoders",
    "ViTEncoder": "_encoders",
    "DINOHead": "_objectives",
    "DINOObjective": "_objectives",
    "MAEObjective": "_objectives",
    "dino": "_recipes",
    "dino_settings": "_recipes",
    "mae": "_recipes",
    "MAEViews": "_views",
    "MultiCropViews": "_views",
    "random_patch_mask": "_views",
    "functional": "",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (the package itself stays light)."""
    if name in _LAZY:
        from importlib import import_module

        module = import_module(f"{__name__}.{_LAZY[name] or name}")
        value = module if not _LAZY[name] else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
