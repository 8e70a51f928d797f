"""Pluggy hook specifications: training and evaluation events, loggers, CLI commands.

Plugins implement hooks with :data:`hookimpl` and declare the module in the
``ssl_core.hooks`` entry-point group. Hook plugins are imported only when a run
starts (or when the CLI meets an unknown command), never by ``ssl plugins``.

Example:
    >>> class PrintLoss:
    ...     @hookimpl
    ...     def ssl_on_step_end(self, step, metrics):
    ...         pass
    >>> pm = make_plugin_manager(load_entry_points=False)
    >>> _ = pm.register(PrintLoss())
"""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Mapping
from typing import Any, Final

import pluggy

from ._discovery import HOOKS_GROUP

__all__ = ["PROJECT_NAME", "HookSpecs", "hookimpl", "hookspec", "make_plugin_manager"]

PROJECT_NAME: Final = "ssl_core"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class HookSpecs:
    """The hooks ssl-core calls. Every argument is optional to implement (pluggy)."""

    @hookspec
    def ssl_on_train_start(self, config: Mapping[str, Any], encoder: Any, objective: Any, out_dir: str | None) -> None:
        """Called once before the first step (also after a resume)."""

    @hookspec
    def ssl_on_step_end(self, step: int, metrics: Mapping[str, float]) -> None:
        """Called after every optimizer step and checkpoint, on the main process."""

    @hookspec
    def ssl_on_train_end(self, summary: Mapping[str, Any]) -> None:
        """Called once after training finishes."""

    @hookspec
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        """Called after each evaluator has run."""

    @hookspec
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Logger back-ends (TensorBoard, W&B, ...) receive every logged row here."""

    @hookspec
    def ssl_add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        """Add sub-commands to the ``ssl`` CLI; set ``func`` with ``set_defaults``."""


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with ssl-core's hookspecs, and hook plugins from entry points.

    A hook plugin that fails to import is skipped with a warning naming it; the
    others still load.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HookSpecs)
    if not load_entry_points:
        return pm
    from importlib import metadata

    for ep in metadata.entry_points(group=HOOKS_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        try:
            module_name, _, attr = ep.value.partition(":")
            plugin: Any = importlib.import_module(module_name.strip())
            for part in attr.strip().split(".") if attr.strip() else ():
                plugin = getattr(plugin, part)
            if pm.is_registered(plugin) or pm.get_plugin(ep.name) is not None:
                continue
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # isolate broken third-party hook plugins
            warnings.warn(f"hook plugin {ep.name!r} from {dist} was skipped: {type(exc).__name__}: {exc}", stacklevel=2)
    return pm
