"""Check and convert config values against type annotations (``[train]`` keys, component parameters).

One set of rules for everything a pipeline file sets: ``int`` takes integers only (not
``true``), ``float`` takes any number and returns a float, ``bool`` takes ``true`` or
``false``, ``str`` takes anything and returns its text, ``Literal[...]`` takes one of its
values, ``tuple[...]`` and ``list[...]`` take a list whose items follow their own
annotation, ``Optional[X]`` and ``X | None`` take ``None`` or an ``X``. Any other
annotation (a class, ``Callable``, a union of several types, ...) is not checked and the
value passes through unchanged.

Example:
    >>> coerce(3, float, "train.lr")
    3.0
    >>> coerce([1, 2], tuple[float, float], "train.betas")
    (1.0, 2.0)
    >>> coerce("big", int, "objective 'x' parameter 'dim'")
    Traceback (most recent call last):
    ...
    ssl_core._errors.ConfigError: objective 'x' parameter 'dim' must be an integer, got 'big'
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from ._errors import ConfigError

__all__ = ["coerce"]

_NUMBER_HINTS = (int, float)


def _describe(hint: Any) -> str:
    """How an item of that annotation is named in an error message."""
    if hint is bool:
        return "true/false value"
    if hint is int:
        return "integer"
    if hint is float:
        return "number"
    if hint is str:
        return "string"
    return "value"


def _optional_inner(hint: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``Optional[X]`` / ``X | None`` with one ``X``; else ``(False, None)``."""
    origin = get_origin(hint)
    if origin is Union or (origin is None and isinstance(hint, types.UnionType)) or origin is types.UnionType:
        args = get_args(hint)
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(others) < len(args):
            return True, others[0]
    return False, None


def coerce(value: Any, hint: Any, label: str) -> Any:
    """``value`` checked against the annotation ``hint``, converted where the rules above say so.

    ``label`` names the setting in the error message (``"train.steps"``,
    ``"objective 'core.simclr' parameter 'projector_dim'"``).

    Raises:
        ConfigError: the value does not fit the annotation.
    """
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        return str(value)
    origin = get_origin(hint)
    if origin is Literal:
        options = get_args(hint)
        if value not in options:
            raise ConfigError(f"{label} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    if origin is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{label} must be a list of {_describe(args[0])}s, got {value!r}")
            return tuple(coerce(v, args[0], f"{label}[{i}]") for i, v in enumerate(value))
        if not args:
            return value
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            kinds = {_describe(a) for a in args}
            if all(a in _NUMBER_HINTS for a in args) and float in args:
                item = "numbers"
            else:
                item = f"{kinds.pop()}s" if len(kinds) == 1 else "values"
            raise ConfigError(f"{label} must be a list of {len(args)} {item}, got {value!r}")
        return tuple(coerce(v, a, f"{label}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is list:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)):
            item = f" of {_describe(args[0])}s" if args else ""
            raise ConfigError(f"{label} must be a list{item}, got {value!r}")
        if not args:
            return list(value)
        return [coerce(v, args[0], f"{label}[{i}]") for i, v in enumerate(value)]
    optional, inner = _optional_inner(hint)
    if optional:
        return None if value is None else coerce(value, inner, label)
    return value
