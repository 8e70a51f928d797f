"""Pipeline configuration: TOML files checked against dataclass schemas.

A pipeline file names one component per box and the training settings::

    name = "quickstart"
    seed = 0

    [data]
    name = "core.digits"

    [encoder]
    name = "core.mlp"
    embed_dim = 128          # every other key is passed to the component

    [views]
    name = "core.noise"

    [objective]
    name = "core.simclr"

    [train]
    steps = 300
    batch_size = 256

    [[evaluate]]
    name = "core.knn"

Several objectives train one encoder when ``[[objective]]`` is an array of tables; each
may name its own ``views`` and a loss ``weight`` (see :class:`ObjectiveConfig`). Pipelines
made of ``[[stage]]`` blocks are read by :func:`load_stages` (see :mod:`ssl_core._stages`).

Unknown keys get an error naming the closest valid key. Component parameters are
checked against the component's signature when it is built.

Example:
    >>> cfg = load_config({"data": {"name": "core.digits"}, "encoder": {"name": "core.mlp"},
    ...                    "views": {"name": "core.noise"}, "objective": {"name": "core.simclr"}},
    ...                   overrides=["train.steps=5"])
    >>> cfg.train.steps
    5
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ._coerce import coerce
from ._errors import ConfigError

__all__ = [
    "ComponentConfig",
    "ObjectiveConfig",
    "PipelineConfig",
    "TrainConfig",
    "apply_overrides",
    "component_config",
    "deep_copy",
    "load_config",
    "merge_tables",
    "read_pipeline",
    "to_dict",
    "unknown_key_error",
]

Precision = Literal["fp32", "bf16", "fp16", "auto"]
Strategy = Literal["auto", "none", "ddp", "fsdp"]


@dataclass
class ComponentConfig:
    """A component by registry name, with the keyword arguments for its factory."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig(ComponentConfig):
    """One objective of a pipeline: its loss ``weight``, its own ``views`` (else the pipeline's) and a log ``label``.

    With several objectives the losses are summed with their weights on one shared
    encoder, and each objective's scalars are logged as ``{label}/{key}``::

        [[objective]]
        name = "vision.mae"
        weight = 1.0
        views = { name = "vision.random_mask", mask_ratio = 0.75 }

        [[objective]]
        name = "vision.dino"
        views = { name = "vision.multi_crop" }
    """

    weight: float = 1.0
    views: ComponentConfig | None = None
    label: str = ""


@dataclass
class TrainConfig:
    """Settings of the training loop (shared by every method).

    Warm-up: ``warmup_ratio`` (a fraction of ``steps``) follows ``--set train.steps=...``;
    ``warmup_steps`` is a fixed count. When both are set the ratio wins.

    Example:
        >>> TrainConfig(steps=200, warmup_ratio=0.1).total_warmup_steps()
        20
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    weight_decay_end: float | None = None
    decay_bias_and_norm: bool = False
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    warmup_steps: int = 0
    warmup_ratio: float | None = None
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    accumulate: int = 1
    precision: Precision = "fp32"
    compile: bool = False
    device: str = "auto"
    threads: int | None = None
    distributed: Strategy = "auto"
    num_workers: int | None = None  # None: a few for datasets that decode lazily, 0 for in-memory ones
    drop_last: bool = True  # False: every sample once per epoch (uneven last batches, never a hang under DDP)
    bucket_by_length: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    progress: bool = True
    eval_batch_size: int = 512
    monitor_every: int | None = None  # None: every max(50, steps // 20) steps; 0: no monitors
    monitor_samples: int = 512  # the fixed training (and test) slice the monitors embed
    on_collapse: Literal["warn", "stop"] = "warn"

    def total_warmup_steps(self) -> int:
        """The number of warm-up steps: ``warmup_ratio * steps`` when set, else ``warmup_steps`` (at most ``steps``)."""
        if self.warmup_ratio is not None:
            return min(self.steps, round(self.warmup_ratio * self.steps))
        return min(self.warmup_steps, self.steps)


@dataclass
class PipelineConfig:
    """A whole pipeline: data, encoder, views, objective(s), training and evaluation.

    ``views`` may be ``None`` when every objective names its own; ``objectives`` is
    empty only for evaluation-only pipelines (an ``evaluate`` stage).
    """

    data: ComponentConfig
    encoder: ComponentConfig
    views: ComponentConfig | None = None
    objectives: list[ObjectiveConfig] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: list[ComponentConfig] = field(default_factory=list)
    name: str = "pipeline"
    seed: int = 0
    compare_random_init: bool = True
    plots: bool = True
    loggers: list[ComponentConfig] = field(default_factory=lambda: [ComponentConfig(name="csv")])

    @property
    def objective(self) -> ObjectiveConfig:
        """The first (usually the only) objective."""
        if not self.objectives:
            raise ConfigError("the pipeline has no [objective]; add one to pretrain")
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        """Several objectives, or one with its own views: trained through :class:`~ssl_core.MultiObjective`."""
        return len(self.objectives) > 1 or any(o.views is not None for o in self.objectives)


_OBJECTIVE_KEYS = ("weight", "views", "label")


def unknown_key_error(key: str, valid: Sequence[str], where: str) -> ConfigError:
    """A :class:`ConfigError` for an unknown key, naming the closest valid one."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown key {key!r} in {where}{hint}")


def component_config(raw: Any, where: str) -> ComponentConfig:
    """A component table (or a bare name) as a :class:`ComponentConfig`; ``where`` names it in errors."""
    if isinstance(raw, str):
        return ComponentConfig(name=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{where}] must be a table with a 'name' key, got {type(raw).__name__}")
    if "name" not in raw:
        raise ConfigError(f"[{where}] needs a 'name' key naming a registered component (see `ssl plugins`)")
    params = {k: v for k, v in raw.items() if k != "name"}
    nested = params.pop("params", None)  # accept an explicit [x.params] table too
    if isinstance(nested, Mapping):
        params.update(nested)
    return ComponentConfig(name=str(raw["name"]), params=dict(params))


def _objectives(raw: Any) -> list[ObjectiveConfig]:
    """``[objective]`` (one table) or ``[[objective]]`` (several), each with optional weight, views and label."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ConfigError("[[objective]] is empty; name at least one objective")
    out: list[ObjectiveConfig] = []
    for i, item in enumerate(items):
        where = "objective" if not isinstance(raw, list) else f"objective.{i}"
        if isinstance(item, Mapping):
            reserved = {k: item[k] for k in _OBJECTIVE_KEYS if k in item}
            item = {k: v for k, v in item.items() if k not in _OBJECTIVE_KEYS}
        else:
            reserved = {}
        base = component_config(item, where)
        weight = reserved.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"{where}.weight must be a non-negative number, got {weight!r}")
        views = component_config(reserved["views"], f"{where}.views") if reserved.get("views") is not None else None
        label = str(reserved.get("label") or base.name.rsplit(".", 1)[-1])
        taken = {o.label for o in out}
        unique, n = label, 2
        while unique in taken:
            unique, n = f"{label}#{n}", n + 1
        out.append(ObjectiveConfig(name=base.name, params=base.params, weight=float(weight), views=views, label=unique))
    return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    return coerce(value, hint, f"train.{key}")  # the rules live in _coerce, shared with component parameters


def _train(raw: Any) -> TrainConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[train] must be a table, got {type(raw).__name__}")
    hints = get_type_hints(TrainConfig)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            raise unknown_key_error(key, list(hints), "[train]")
        values[key] = _coerce(value, hints[key], key)
    cfg = TrainConfig(**values)
    for key in ("steps", "batch_size", "accumulate", "eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {cfg.lr}")
    if cfg.warmup_ratio is not None and not 0.0 <= cfg.warmup_ratio < 1.0:
        raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.warmup_ratio is not None and cfg.warmup_steps:
        warnings.warn(
            f"train.warmup_steps={cfg.warmup_steps} is ignored: train.warmup_ratio={cfg.warmup_ratio} is set "
            f"(recipes set the ratio); use --set train.warmup_ratio=... to change the warm-up",
            stacklevel=3,
        )
    return cfg


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # bare strings need no quotes on the command line


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as TOML, else kept as strings).

    Example:
        >>> apply_overrides({"train": {"steps": 10}}, ["train.steps=20", "encoder.name=core.mlp"])
        {'train': {'steps': 20}, 'encoder': {'name': 'core.mlp'}}
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. train.steps=100")
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a valid list index")
                node = node[int(part)]
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return raw


def read_pipeline(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The raw pipeline mapping of a TOML path (or a copy of a mapping), before any checking."""
    if isinstance(source, Mapping):
        return dict(deep_copy(source))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"pipeline file {str(path)!r} not found; pass a .toml path, "
            "or run `ssl run` alone for the built-in quickstart"
        )
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def load_config(
    source: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), *, pretrain: bool = True
) -> PipelineConfig:
    """Read a pipeline from a TOML path or a mapping, apply overrides and validate it.

    ``pretrain=False`` accepts a pipeline without views and objective (evaluation only).

    Raises:
        ConfigError: a missing section, an unknown key (with the closest valid one)
            or a value of the wrong type.
    """
    raw = apply_overrides(read_pipeline(source), overrides)
    if "stage" in raw:
        raise ConfigError(
            "this pipeline has [[stage]] blocks: run it with `ssl run` or ssl_core.run(), "
            "or read it with ssl_core.load_stages()"
        )
    valid = [f.name for f in dataclasses.fields(PipelineConfig) if f.name not in ("objectives", "loggers")]
    valid += ["objective", "logger"]
    for key in raw:
        if key not in valid:
            raise unknown_key_error(key, valid, "the pipeline")
    for key in ("data", "encoder", "objective") if pretrain else ("data", "encoder"):
        if key not in raw:
            raise ConfigError(f"the pipeline needs a [{key}] table with a 'name' (see `ssl plugins` for names)")
    objectives = _objectives(raw["objective"]) if "objective" in raw else []
    if pretrain and "views" not in raw and any(o.views is None for o in objectives):
        raise ConfigError(
            "the pipeline needs a [views] table with a 'name' (see `ssl plugins` for names), "
            "or a views = {...} in every [[objective]]"
        )
    evaluate = raw.get("evaluate", [])
    if isinstance(evaluate, Mapping):
        evaluate = [evaluate]
    if not isinstance(evaluate, list):
        raise ConfigError("[[evaluate]] must be an array of tables, each with a 'name'")
    top = {key: coerce(raw[key], hint, key) for key, hint in _TOP_LEVEL.items() if key in raw}
    return PipelineConfig(
        data=component_config(raw["data"], "data"),
        encoder=component_config(raw["encoder"], "encoder"),
        views=component_config(raw["views"], "views") if "views" in raw else None,
        objectives=objectives,
        train=_train(raw.get("train", {})),
        evaluate=[component_config(e, f"evaluate.{i}") for i, e in enumerate(evaluate)],
        loggers=_loggers(raw.get("logger", [{"name": "csv"}])),
        **top,
    )


_TOP_LEVEL: dict[str, Any] = {"name": str, "seed": int, "compare_random_init": bool, "plots": bool}
"""Top-level keys of a pipeline with their types (checked like ``[train]``)."""


def _loggers(raw: Any) -> list[ComponentConfig]:
    """``[[logger]]`` tables (or bare names); ``logger = []`` switches every logger off."""
    items = raw if isinstance(raw, list) else [raw]
    return [component_config(item, f"logger.{i}") for i, item in enumerate(items)]


def merge_tables(defaults: Mapping[str, Any], update: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """``defaults`` with ``update`` laid over it, as stages and recipe files combine pipelines.

    A component table (``data``, ``encoder``, ``views``) naming the default's component (or
    no name) updates its parameters, one naming another component replaces it; ``train``
    updates key by key; every other key replaces. Keys in ``skip`` are ignored.

    Example:
        >>> merge_tables({"encoder": {"name": "core.mlp", "embed_dim": 8}, "train": {"steps": 5}},
        ...              {"encoder": {"embed_dim": 16}, "train": {"lr": 0.1}})
        {'encoder': {'name': 'core.mlp', 'embed_dim': 16}, 'train': {'steps': 5, 'lr': 0.1}}
    """
    merged: dict[str, Any] = deep_copy(defaults)
    for key, value in update.items():
        if key in skip:
            continue
        base = merged.get(key)
        if key in ("data", "encoder", "views") and isinstance(value, Mapping) and isinstance(base, Mapping):
            same = "name" not in value or value["name"] == base.get("name")
            merged[key] = {**base, **deep_copy(value)} if same else deep_copy(value)
        elif key == "train" and isinstance(value, Mapping) and isinstance(base, Mapping):
            merged[key] = {**base, **deep_copy(value)}
        else:
            merged[key] = deep_copy(value)
    return merged


def deep_copy(value: Any) -> Any:
    """A copy of nested tables and lists (TOML data), sharing only the leaf values."""
    if isinstance(value, Mapping):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [deep_copy(v) for v in value]
    return value


def to_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The resolved config as plain TOML-ready data (component params inlined)."""

    def component(c: ComponentConfig) -> dict[str, Any]:
        return {"name": c.name, **c.params}

    train = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg.train).items()}
    out: dict[str, Any] = {
        "name": cfg.name,
        "seed": cfg.seed,
        "compare_random_init": cfg.compare_random_init,
        "plots": cfg.plots,
    }
    out["data"], out["encoder"] = component(cfg.data), component(cfg.encoder)
    if cfg.views is not None:
        out["views"] = component(cfg.views)

    def objective(o: ObjectiveConfig) -> dict[str, Any]:
        extra: dict[str, Any] = {"weight": o.weight, "label": o.label} if cfg.multi_objective else {}
        if o.views is not None:
            extra["views"] = component(o.views)
        return {**component(o), **extra}

    if cfg.objectives:
        objectives = [objective(o) for o in cfg.objectives]
        out["objective"] = objectives if len(objectives) > 1 else objectives[0]
    out["train"] = {k: v for k, v in train.items() if v is not None}
    out["evaluate"] = [component(e) for e in cfg.evaluate]
    out["logger"] = [component(c) for c in cfg.loggers]
    return out
