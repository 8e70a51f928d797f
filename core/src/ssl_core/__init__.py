"""ssl-core: contracts, discovery, training loop, CLI and evaluators for self-supervised learning.

Importing ``ssl_core`` is cheap: torch and plugins load only when a name that needs
them is first used.

Example:
    >>> import ssl_core
    >>> ssl_core.__version__
    '1.0.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import PLUGIN_API_VERSION, __version__

__all__ = [
    "CAPABILITIES",
    "EXIT_PREEMPTED",
    "EXPORT_TOLERANCE",
    "MODALITIES",
    "PLUGIN_API_VERSION",
    "STANDARD_DATA_FACTS",
    "BuiltPipeline",
    "CollapseError",
    "ComponentConfig",
    "ComponentNotFoundError",
    "ConfigError",
    "DatasetProvider",
    "DatasetSplits",
    "DistributedContext",
    "Encoder",
    "EncoderBase",
    "EncoderWeightsMismatchError",
    "Evaluator",
    "ExportError",
    "ExportResult",
    "ExportSource",
    "Exporter",
    "Features",
    "IncompatibleComponentsError",
    "KMeansResult",
    "KNNEvaluator",
    "LayerWeightedProbeEvaluator",
    "LengthBucketBatchSampler",
    "LinearProbeEvaluator",
    "LoadedEncoder",
    "MultiObjective",
    "MultiViews",
    "NonFiniteLossError",
    "Objective",
    "ObjectiveBase",
    "ObjectiveConfig",
    "PipelineConfig",
    "PluginLoadError",
    "PreemptedError",
    "Recipe",
    "Registry",
    "RunResult",
    "SSLCoreError",
    "SkippedItem",
    "Stage",
    "StagedPipeline",
    "ThroughputMeter",
    "TrainConfig",
    "TrainState",
    "ViewGenerator",
    "ViewGeneratorBase",
    "Views",
    "__version__",
    "all_gather_with_grad",
    "apply_overrides",
    "autocast_context",
    "build_pipeline",
    "capture_rng_state",
    "check_compatible",
    "cli_main",
    "cosine_schedule",
    "default_registry",
    "ema_update_",
    "embed",
    "evaluate",
    "evaluate_checkpoint",
    "export",
    "export_formats",
    "feature_tensors",
    "hookimpl",
    "init_distributed",
    "kmeans",
    "kmeans_predict",
    "load_checkpoint",
    "load_config",
    "load_encoder",
    "load_encoder_state",
    "load_stages",
    "make_plugin_manager",
    "make_teacher",
    "max_abs_diff",
    "move_to_device",
    "native_bf16",
    "rankme",
    "resolve_device",
    "resolve_precision",
    "restore_rng_state",
    "run",
    "sample_generator",
    "save_checkpoint",
    "scan_plugins",
    "train",
    "warmup_cosine_lr",
]

# public name -> private module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "EXPORT_TOLERANCE": "_export",
    "ExportError": "_export",
    "ExportResult": "_export",
    "ExportSource": "_export",
    "Exporter": "_export",
    "export": "_export",
    "export_formats": "_export",
    "feature_tensors": "_export",
    "CollapseError": "_monitor",
    "rankme": "_monitor",
    "max_abs_diff": "_export",
    "BuiltPipeline": "_pipeline",
    "build_pipeline": "_pipeline",
    "load_encoder_state": "_pipeline",
    "check_compatible": "_pipeline",
    "CAPABILITIES": "_capabilities",
    "MODALITIES": "_capabilities",
    "STANDARD_DATA_FACTS": "_params",
    "MultiObjective": "_multi",
    "MultiViews": "_multi",
    "Stage": "_stages",
    "StagedPipeline": "_stages",
    "load_stages": "_stages",
    "ComponentConfig": "_config",
    "ObjectiveConfig": "_config",
    "PipelineConfig": "_config",
    "TrainConfig": "_config",
    "load_config": "_config",
    "apply_overrides": "_config",
    "ComponentNotFoundError": "_errors",
    "ConfigError": "_errors",
    "IncompatibleComponentsError": "_errors",
    "NonFiniteLossError": "_errors",
    "PreemptedError": "_errors",
    "EXIT_PREEMPTED": "_errors",
    "PluginLoadError": "_errors",
    "SSLCoreError": "_errors",
    "DatasetProvider": "_protocols",
    "DatasetSplits": "_protocols",
    "Encoder": "_protocols",
    "Evaluator": "_protocols",
    "Features": "_protocols",
    "Objective": "_protocols",
    "Recipe": "_protocols",
    "ViewGenerator": "_protocols",
    "Views": "_protocols",
    "EncoderBase": "_bases",
    "ObjectiveBase": "_bases",
    "ViewGeneratorBase": "_bases",
    "DistributedContext": "_distributed",
    "all_gather_with_grad": "_distributed",
    "init_distributed": "_distributed",
    "KMeansResult": "_kmeans",
    "kmeans": "_kmeans",
    "kmeans_predict": "_kmeans",
    "KNNEvaluator": "_evaluators",
    "LayerWeightedProbeEvaluator": "_evaluators",
    "LinearProbeEvaluator": "_evaluators",
    "embed": "_evaluators",
    "LengthBucketBatchSampler": "_sampler",
    "ThroughputMeter": "_meters",
    "Registry": "_registry",
    "default_registry": "_registry",
    "LoadedEncoder": "_evaluate",
    "RunResult": "_results",
    "load_encoder": "_evaluate",
    "evaluate": "_evaluate",
    "evaluate_checkpoint": "_evaluate",
    "run": "_run",
    "TrainState": "_train",
    "EncoderWeightsMismatchError": "_errors",
    "autocast_context": "_device",
    "resolve_device": "_device",
    "resolve_precision": "_device",
    "native_bf16": "_device",
    "move_to_device": "_device",
    "capture_rng_state": "_checkpoint",
    "load_checkpoint": "_checkpoint",
    "restore_rng_state": "_checkpoint",
    "save_checkpoint": "_checkpoint",
    "cosine_schedule": "_schedules",
    "warmup_cosine_lr": "_schedules",
    "ema_update_": "_ema",
    "make_teacher": "_ema",
    "hookimpl": "_hooks",
    "cli_main": "_cli",
    "make_plugin_manager": "_hooks",
    "scan_plugins": "_discovery",
    "train": "_train",
    "SkippedItem": "_streaming",
    "sample_generator": "_streaming",
}


_RENAMED: dict[str, str] = {"cli_main": "main"}  # public name -> name inside its module


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ssl_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._bases import EncoderBase, ObjectiveBase, ViewGeneratorBase
    from ._capabilities import CAPABILITIES, MODALITIES
    from ._checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
    from ._cli import main as cli_main
    from ._config import (
        ComponentConfig,
        ObjectiveConfig,
        PipelineConfig,
        TrainConfig,
        apply_overrides,
        load_config,
    )
    from ._device import autocast_context, move_to_device, native_bf16, resolve_device, resolve_precision
    from ._discovery import scan_plugins
    from ._distributed import DistributedContext, all_gather_with_grad, init_distributed
    from ._ema import ema_update_, make_teacher
    from ._errors import (
        EXIT_PREEMPTED,
        ComponentNotFoundError,
        ConfigError,
        EncoderWeightsMismatchError,
        IncompatibleComponentsError,
        NonFiniteLossError,
        PluginLoadError,
        PreemptedError,
        SSLCoreError,
    )
    from ._evaluate import LoadedEncoder, evaluate, evaluate_checkpoint, load_encoder
    from ._evaluators import KNNEvaluator, LayerWeightedProbeEvaluator, LinearProbeEvaluator, embed
    from ._export import (
        EXPORT_TOLERANCE,
        Exporter,
        ExportError,
        ExportResult,
        ExportSource,
        export,
        export_formats,
        feature_tensors,
        max_abs_diff,
    )
    from ._hooks import hookimpl, make_plugin_manager
    from ._kmeans import KMeansResult, kmeans, kmeans_predict
    from ._meters import ThroughputMeter
    from ._monitor import CollapseError, rankme
    from ._multi import MultiObjective, MultiViews
    from ._params import STANDARD_DATA_FACTS
    from ._pipeline import BuiltPipeline, build_pipeline, check_compatible, load_encoder_state
    from ._protocols import (
        DatasetProvider,
        DatasetSplits,
        Encoder,
        Evaluator,
        Features,
        Objective,
        Recipe,
        ViewGenerator,
        Views,
    )
    from ._registry import Registry, default_registry
    from ._results import RunResult
    from ._run import run
    from ._sampler import LengthBucketBatchSampler
    from ._schedules import cosine_schedule, warmup_cosine_lr
    from ._stages import Stage, StagedPipeline, load_stages
    from ._streaming import SkippedItem, sample_generator
    from ._train import TrainState, train
