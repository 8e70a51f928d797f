"""Which pipeline facts fill a component's parameters, and the checking of the parameters a file sets.

A parameter the pipeline file leaves out is filled from the pipeline's context only when
its name is a :data:`PIPELINE_FACTS` or :data:`STANDARD_DATA_FACTS` entry, or when the
component declares it in ``data_params`` (a class or function attribute naming keys of
the dataset's ``info`` it wants)::

    class UtteranceProbe:
        data_params = ("num_speakers",)  # filled from DatasetSplits.info["num_speakers"]

Any other key of ``info`` never reaches a parameter, so a dataset fact that happens to
share a parameter's name (``info["target"]`` and a probe's ``target``) cannot change a
component's behaviour behind the pipeline file's back.

Values the file sets are checked against the parameter's annotation with the rules of
:mod:`ssl_core._coerce` (the same as ``[train]``'s).

Example:
    >>> def probe(num_classes: int, target: str = "digit", lr: float = 0.1): ...
    >>> fillable(probe)[:3]
    ('num_classes', 'modality', 'embed_dim')
    >>> check_params(probe, {"lr": 1}, "evaluator 'x'")
    {'lr': 1.0}
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

from ._coerce import coerce
from ._errors import ConfigError

__all__ = ["PIPELINE_FACTS", "STANDARD_DATA_FACTS", "check_params", "declared_data_params", "fillable"]

PIPELINE_FACTS: Final[tuple[str, ...]] = (
    "num_classes",
    "modality",
    "embed_dim",
    "encoder",
    "out_dir",
    "seed",
    "splits",
)
"""Facts of the pipeline itself: ``DatasetSplits.num_classes`` and ``.modality``, the built encoder
and its ``embed_dim`` (views, objectives), and for ``[[stage]]`` tasks the stage's ``out_dir``,
the pipeline's ``seed`` and the dataset's ``splits``."""

STANDARD_DATA_FACTS: Final[tuple[str, ...]] = (
    "in_dim",
    "in_channels",
    "image_shape",
    "image_size",
    "channels",
    "sample_rate",
    "series_length",
    "num_clusters",
)
"""Keys of ``DatasetSplits.info`` with one meaning across plugins, filled into any component asking for them:
``in_dim`` (features per sample or token), ``in_channels`` (channels of a series), ``image_shape``
(``(H, W)``), ``image_size`` (side of square images), ``channels`` (image channels),
``sample_rate`` (Hz), ``series_length`` (time steps), ``num_clusters`` (of frame labels)."""


def declared_data_params(factory: Any, what: str = "component") -> tuple[str, ...]:
    """The ``data_params`` a factory declares (``()`` when none).

    Raises:
        ConfigError: ``data_params`` is not a tuple or list of strings.

    Example:
        >>> def f(num_speakers): ...
        >>> f.data_params = ("num_speakers",)
        >>> declared_data_params(f)
        ('num_speakers',)
    """
    declared = getattr(factory, "data_params", ())
    if isinstance(declared, (tuple, list)) and all(isinstance(n, str) for n in declared):
        return tuple(declared)
    raise ConfigError(f"{what} declares data_params = {declared!r}; it must be a tuple of info key names (str)")


def fillable(factory: Any, what: str = "component") -> tuple[str, ...]:
    """Every name the pipeline may fill into ``factory``'s parameters: facts, standard data facts, declared ones."""
    extra = [n for n in declared_data_params(factory, what) if n not in PIPELINE_FACTS + STANDARD_DATA_FACTS]
    return PIPELINE_FACTS + STANDARD_DATA_FACTS + tuple(extra)


def parameter_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``factory``'s parameters (a class: its ``__init__``), minus unresolvable ones."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a name only importable under TYPE_CHECKING, a forward reference, ...: one at a time
        hints = {}
        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            return {}
        namespace = getattr(inspect.unwrap(target), "__globals__", {})
        for p in params:
            annotation = p.annotation
            if annotation is p.empty:
                continue
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, dict(namespace))  # what typing.get_type_hints does, per name
                except Exception:
                    continue
            hints[p.name] = annotation
    hints.pop("return", None)
    return hints


def check_params(factory: Callable[..., Any], params: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``params`` checked and converted against ``factory``'s annotations (see :mod:`ssl_core._coerce`).

    ``None`` is accepted for a parameter whose default is ``None``; parameters without a
    usable annotation pass through.

    Raises:
        ConfigError: ``"{what} parameter 'key' must be ..., got ..."``.
    """
    try:
        signature = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return dict(params)
    hints = parameter_hints(factory)
    out = dict(params)
    for key, value in params.items():
        if key not in hints or key not in signature:
            continue
        if value is None and signature[key].default is None:
            continue
        out[key] = coerce(value, hints[key], f"{what} parameter {key!r}")
    return out
