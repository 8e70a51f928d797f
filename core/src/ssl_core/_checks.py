"""Shape checks of components at registration time, by signature inspection.

Structural checks only: a component is accepted when it can be called the way the
pipeline will call it. ``isinstance`` against the protocols is never used.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._errors import PluginLoadError

__all__ = ["check_component"]

# kind -> (callable to inspect, positional parameters the pipeline passes)
_CALL_SHAPES: dict[str, tuple[str, int]] = {
    "encoder": ("forward", 1),  # forward(batch, token_mask=None)
    "views": ("__call__", 2),  # __call__(batch, generator)
    "objective": ("forward", 2),  # forward(encoder, views)
    "evaluator": ("__call__", 3),  # __call__(encoder, train, test)
    "exporter": ("export", 2),  # export(source, out)
}


def _accepts_positional(fn: Callable[..., Any], count: int, *, bound: bool) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without signatures: give them the benefit of the doubt
        return True
    params = list(sig.parameters.values())
    if bound and params and params[0].name == "self":
        params = params[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) <= count <= len(positional)


def check_component(kind: str, name: str, obj: Any, *, plugin: str = "<manual>") -> None:
    """Raise :class:`PluginLoadError` when ``obj`` cannot serve as a ``kind`` component.

    Example:
        >>> check_component("dataset", "demo.ok", lambda root=None, **kw: None)
    """
    if not callable(obj):
        raise PluginLoadError(plugin, f"{kind} {name!r} is {type(obj).__name__}, not a class or function")
    if kind in ("task", "logger"):  # called with keywords only (tasks: encoder, splits, ...; loggers: out_dir, ...)
        return
    if kind in ("dataset", "recipe"):
        count = 0
        if not _accepts_positional(obj, count, bound=False):
            what = "a root=None keyword" if kind == "dataset" else "no required arguments"
            raise PluginLoadError(plugin, f"{kind} {name!r} must be callable with {what}")
        if kind == "dataset":
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                return
            if "root" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                raise PluginLoadError(plugin, f"dataset {name!r} must accept a 'root' keyword argument")
        return
    method_name, count = _CALL_SHAPES[kind]
    if inspect.isclass(obj):
        method = getattr(obj, method_name, None)
        if method is None or (method_name == "forward" and method is getattr(object, "forward", None)):
            raise PluginLoadError(plugin, f"{kind} {name!r} ({obj.__qualname__}) has no {method_name}() method")
        if not _accepts_positional(method, count, bound=True):
            raise PluginLoadError(
                plugin,
                f"{kind} {name!r}: {obj.__qualname__}.{method_name} must accept {count} positional argument(s) "
                f"({_DESCRIPTION[kind]})",
            )
    # factories (plain functions returning a component) are checked when built, see _pipeline


_DESCRIPTION = {
    "encoder": "batch[, token_mask]",
    "views": "batch, generator",
    "objective": "encoder, views",
    "evaluator": "encoder, train, test",
    "exporter": "source, out",
}
