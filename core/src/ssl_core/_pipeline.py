"""Build a pipeline's components from a config, and check that they fit together.

Factories are called with the parameters from the config plus, where their
signature asks for them and the config is silent, facts the pipeline knows: the
dataset's ``info`` (e.g. ``in_dim``, ``sample_rate``), ``num_classes``,
``modality`` and, once the encoder exists, its ``embed_dim``. Unknown parameters
get an error naming the closest accepted one. Capabilities are checked before
training starts, from declared flags, not by a crash mid-run.

Example:
    >>> from ssl_core._config import load_config
    >>> cfg = load_config({"data": {"name": "core.digits"}, "encoder": {"name": "core.mlp"},
    ...                    "views": {"name": "core.noise"}, "objective": {"name": "core.simclr"}})
    >>> built = build_pipeline(cfg)
    >>> built.encoder.embed_dim
    128
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._capabilities import ANY_MODALITY, flag, requirements
from ._config import ComponentConfig, PipelineConfig
from ._errors import ConfigError, EncoderWeightsMismatchError, IncompatibleComponentsError
from ._params import check_params, fillable
from ._protocols import DatasetSplits
from ._registry import Registry, default_registry

__all__ = [
    "BuiltPipeline",
    "build_component",
    "build_dataset",
    "build_encoder",
    "build_evaluators",
    "build_pipeline",
    "check_compatible",
    "load_encoder_state",
]


@dataclass
class BuiltPipeline:
    """The live components of a pipeline."""

    splits: DatasetSplits
    encoder: nn.Module
    views: Any
    objective: nn.Module
    evaluators: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


def build_component(
    factory: Callable[..., Any], params: Mapping[str, Any], context: Mapping[str, Any], what: str
) -> Any:
    """Call ``factory(**params)``, filling missing parameters from ``context`` by name.

    Only the pipeline's own facts and the standard data facts fill a parameter, plus the
    ``info`` keys the factory declares in ``data_params`` (see :mod:`ssl_core._params`);
    the values in ``params`` are checked and converted against the factory's annotations.

    Raises:
        ConfigError: an unknown parameter (with the closest valid one), a value of the
            wrong type, or a required one that neither the config nor the pipeline provides.
    """
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory(**params)
    accepted = {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_any:
        for key in params:
            if key not in accepted:
                match = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.5)
                hint = f"; did you mean {match[0]!r}?" if match else f"; it accepts: {', '.join(accepted) or 'nothing'}"
                raise ConfigError(f"{what} has no parameter {key!r}{hint}")
    kwargs = check_params(factory, params, what)
    allowed = set(fillable(factory, what))
    missing, undeclared = [], []
    for name, p in accepted.items():
        if name in kwargs:
            continue
        if name in context and name in allowed:
            kwargs[name] = context[name]
        elif p.default is p.empty:
            missing.append(name)
            if name in context:
                undeclared.append(name)
    if missing:
        fix = "set it in the pipeline file"
        if undeclared:
            names = ", ".join(repr(n) for n in undeclared)
            fix += (
                f", or declare data_params = ({names},) on the component to take it from the dataset's info "
                "(only standard facts are filled without a declaration)"
            )
        raise ConfigError(f"{what} needs {', '.join(repr(m) for m in missing)}; {fix}")
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def check_compatible(splits: DatasetSplits, encoder: Any, views: Any, objective: Any, names: Mapping[str, str]) -> None:
    """Raise :class:`IncompatibleComponentsError` when the boxes cannot work together.

    Checks declared capabilities, before any training: the modality of the data, of what
    the views take (``modality``) and produce (``output_modality``, default the same) and
    of what the encoder takes; an objective that needs tokens, token masks or per-layer
    states from the encoder; an objective needing more views (``min_views``) than the
    generator makes (``num_views``); an objective sized for another ``embed_dim``.
    Every message names the components involved and the missing capability.
    """
    enc_mod = flag(encoder, "modality")
    view_mod = flag(views, "modality")
    declared_out = flag(views, "output_modality")  # views that turn one modality into another
    view_out = declared_out or view_mod
    data_mod = splits.modality
    if ANY_MODALITY not in (view_mod, data_mod) and view_mod != data_mod:
        raise IncompatibleComponentsError(
            f"views {names['views']!r} expect {view_mod} batches but dataset {names['data']!r} yields {data_mod}; "
            f"pick views for {data_mod} data"
        )
    produced = data_mod if view_out == ANY_MODALITY else view_out
    if enc_mod != ANY_MODALITY and produced not in (ANY_MODALITY, enc_mod):
        converted = declared_out not in (None, ANY_MODALITY)
        source = f"views {names['views']!r}" if converted else f"dataset {names['data']!r}"
        raise IncompatibleComponentsError(
            f"encoder {names['encoder']!r} takes {enc_mod} input but {source} gives it {produced}; "
            f"pick an encoder for {produced} data or views that turn {produced} into {enc_mod}"
        )
    for need in requirements():
        has, what = need.provided_by, need.asks
        assert has is not None  # requirements() are the flags with a provider
        if flag(objective, need.name) and not flag(encoder, has):
            raise IncompatibleComponentsError(
                f"objective {names['objective']!r} needs {what}, which encoder {names['encoder']!r} "
                f"({type(encoder).__name__}) does not provide ({has}=False); choose an encoder that does"
            )
    needed, made = flag(objective, "min_views"), flag(views, "num_views")
    if isinstance(needed, int) and isinstance(made, int) and made < needed:
        raise IncompatibleComponentsError(
            f"objective {names['objective']!r} needs at least {needed} views per sample but views "
            f"{names['views']!r} make {made}; raise its num_views or pick multi-view views"
        )
    dim = flag(objective, "embed_dim")
    if isinstance(dim, int) and dim != encoder.embed_dim:
        raise IncompatibleComponentsError(
            f"objective {names['objective']!r} was built for embed_dim={dim} but encoder {names['encoder']!r} "
            f"outputs {encoder.embed_dim}; drop embed_dim from [objective] to take the encoder's"
        )


def _context(splits: DatasetSplits) -> dict[str, Any]:
    return {**splits.info, "num_classes": splits.num_classes, "modality": splits.modality}


def build_encoder(cfg: PipelineConfig, splits: DatasetSplits, registry: Registry | None = None) -> nn.Module:
    """Build the encoder alone, seeded from ``cfg.seed`` so its random init is reproducible."""
    registry = registry or default_registry()
    torch.manual_seed(cfg.seed)
    encoder = build_component(
        registry.get("encoder", cfg.encoder.name), cfg.encoder.params, _context(splits), f"encoder {cfg.encoder.name!r}"
    )
    if not isinstance(getattr(encoder, "embed_dim", None), int):
        raise ConfigError(f"encoder {cfg.encoder.name!r} must set an integer embed_dim attribute")
    return encoder  # type: ignore[no-any-return]


def build_evaluators(
    specs: list[ComponentConfig], splits: DatasetSplits, registry: Registry | None = None
) -> dict[str, Any]:
    """Build evaluators; repeated names get a ``#2``, ``#3`` suffix in the result keys."""
    registry = registry or default_registry()
    out: dict[str, Any] = {}
    for spec in specs:
        key = spec.name
        n = 2
        while key in out:
            key, n = f"{spec.name}#{n}", n + 1
        out[key] = build_component(
            registry.get("evaluator", spec.name), spec.params, _context(splits), f"evaluator {spec.name!r}"
        )
    return out


def build_dataset(cfg: PipelineConfig, registry: Registry | None = None, *, root: str | None = None) -> DatasetSplits:
    """Build ``cfg.data`` (``root`` overrides its folder); checks it returns non-empty ``DatasetSplits``.

    A given ``root`` is also recorded in ``cfg`` as ``data.root`` (made absolute), so the
    config a run stores (``config.toml``, the checkpoints) says where its data was and
    ``ssl evaluate RUN_DIR`` finds it again without ``--root``.
    """
    registry = registry or default_registry()
    data_params = dict(cfg.data.params)
    if root is not None:
        data_params["root"] = root
        cfg.data.params = {**cfg.data.params, "root": os.path.abspath(os.path.expanduser(root))}
    splits = build_component(registry.get("dataset", cfg.data.name), data_params, {}, f"dataset {cfg.data.name!r}")
    if not isinstance(splits, DatasetSplits):
        raise ConfigError(f"dataset {cfg.data.name!r} returned {type(splits).__name__}, not DatasetSplits")
    if hasattr(splits.train, "__len__") and len(splits.train) == 0:  # an iterable source may have no length
        raise ConfigError(f"dataset {cfg.data.name!r} has an empty training split; check its root or options")
    return splits


def build_pipeline(
    cfg: PipelineConfig,
    registry: Registry | None = None,
    *,
    root: str | None = None,
    encoder_state: Mapping[str, Any] | None = None,
) -> BuiltPipeline:
    """Resolve every name in ``cfg`` through the registry and build the components.

    ``encoder_state`` (an earlier stage's encoder weights) is loaded into the encoder
    before the objectives are built, so an EMA teacher starts from it too. With several
    objectives (or one with its own views) the pipeline's objective and views are a
    :class:`~ssl_core.MultiObjective` and :class:`~ssl_core.MultiViews`.
    """
    registry = registry or default_registry()
    if not cfg.objectives:
        raise ConfigError("the pipeline has no [objective] to pretrain with; add one (see `ssl plugins`)")
    splits = build_dataset(cfg, registry, root=root)
    encoder = build_encoder(cfg, splits, registry)
    if encoder_state is not None:
        load_encoder_state(encoder, encoder_state, f"encoder {cfg.encoder.name!r}")
    context = {**_context(splits), "embed_dim": encoder.embed_dim}
    shared_views = None
    if cfg.views is not None:
        shared_views = build_component(
            registry.get("views", cfg.views.name), cfg.views.params, context, f"views {cfg.views.name!r}"
        )
    objectives: dict[str, nn.Module] = {}
    view_generators: list[Any] = []
    for spec in cfg.objectives:
        views_spec = spec.views or cfg.views
        assert views_spec is not None  # load_config checked it
        views = shared_views if spec.views is None else build_component(
            registry.get("views", views_spec.name), views_spec.params, context, f"views {views_spec.name!r}"
        )  # fmt: skip
        objective = build_component(
            registry.get("objective", spec.name),
            spec.params,
            {**context, "encoder": encoder},  # objectives with an EMA teacher copy the encoder
            f"objective {spec.name!r}",
        )
        names = {"data": cfg.data.name, "encoder": cfg.encoder.name, "views": views_spec.name, "objective": spec.name}
        check_compatible(splits, encoder, views, objective, names)
        objectives[spec.label] = objective
        view_generators.append(views)
    evaluators = build_evaluators(cfg.evaluate, splits, registry)
    if cfg.multi_objective:
        from ._multi import MultiObjective, MultiViews

        weights = {spec.label: spec.weight for spec in cfg.objectives}
        return BuiltPipeline(
            splits=splits,
            encoder=encoder,
            views=MultiViews(view_generators),
            objective=MultiObjective(objectives, weights),
            evaluators=evaluators,
            context=context,
        )
    return BuiltPipeline(
        splits=splits,
        encoder=encoder,
        views=view_generators[0],
        objective=next(iter(objectives.values())),
        evaluators=evaluators,
        context=context,
    )


def load_encoder_state(encoder: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Load weights into ``encoder``, or raise :class:`IncompatibleComponentsError` saying what differs."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or resized:
        details = []
        if resized:
            k = resized[0]
            details.append(f"{k} is {tuple(state[k].shape)} in the given weights but {tuple(own[k].shape)} here")
        if missing:
            details.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise EncoderWeightsMismatchError(f"the given encoder weights do not fit {what}: {'; '.join(details)}")
    encoder.load_state_dict(dict(state))
