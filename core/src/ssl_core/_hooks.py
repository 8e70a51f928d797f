"""Pluggy hook specifications (training and evaluation events, loggers, CLI commands) and the plugin manager.

Plugins implement hooks with :data:`hookimpl` and declare the module in the
``ssl_core.hooks`` entry-point group. The plugin manager is built from discovery's
report: hooks of plugins that are ``incompatible``, ``duplicate`` or ``error`` are not
registered, and a hook module that fails to import marks its plugin ``error`` (as
``ssl plugins --check`` shows). Hook plugins are imported only when a run starts (or
when the CLI meets an unknown command), never by ``ssl plugins``.

**Rank rule.** Under ``torchrun`` every run hook fires on rank 0 only (the process that
writes files and evaluates); the other ranks train silently. ``ssl_add_cli_commands``
fires in the CLI process, before any run.

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
import functools
import importlib
import types
import warnings
from collections.abc import Mapping
from typing import Any, Final

import pluggy

from ._discovery import DiscoveryReport, scan_plugins

__all__ = [
    "PROJECT_NAME",
    "HookSpecs",
    "guarded",
    "hookimpl",
    "hookspec",
    "load_hook_plugins",
    "make_plugin_manager",
]

PROJECT_NAME: Final = "ssl_core"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

_UNLOADED_STATUSES: Final = ("incompatible", "duplicate", "error")


class HookSpecs:
    """The hooks ssl-core calls. An implementation may take any subset of a hook's arguments (pluggy)."""

    @hookspec
    def ssl_on_train_start(
        self, config: Mapping[str, Any], encoder: Any, objective: Any, out_dir: str | None, start_step: int
    ) -> None:
        """Called once before the first step (also after a resume, with ``start_step`` > 0)."""

    @hookspec
    def ssl_on_step_end(self, step: int, metrics: Mapping[str, float]) -> None:
        """Called after every optimizer step and checkpoint."""

    @hookspec
    def ssl_on_train_end(self, summary: Mapping[str, Any]) -> None:
        """Called once after training finishes."""

    @hookspec
    def ssl_on_evaluate_end(self, evaluator: str, metrics: Mapping[str, float]) -> None:
        """Called after each evaluator has run (``random_init/`` prefixes the random-init baseline)."""

    @hookspec
    def ssl_log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Logger back-ends receive every logged row here (every ``train.log_every`` steps, the first and last)."""

    @hookspec
    def ssl_log_artifact(self, name: str, path: str) -> None:
        """A file of the run was written (the plots: ``name`` is ``"loss"`` or ``"embeddings"``)."""

    @hookspec
    def ssl_on_results(self, metrics: Mapping[str, Any], out_dir: str | None) -> None:
        """The evaluations are done and ``metrics.json`` is written; plots follow (print results here)."""

    @hookspec
    def ssl_on_run_end(self, metrics: Mapping[str, Any], out_dir: str | None) -> None:
        """Called once the run's results are final (``metrics.json`` written); loggers close here."""

    @hookspec
    def ssl_add_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
        """Add sub-commands to the ``ssl`` CLI; set ``func`` with ``set_defaults``."""


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    plugin: Any = importlib.import_module(module_name.strip())
    for part in attr.strip().split(".") if attr.strip() else ():
        plugin = getattr(plugin, part)
    return plugin


def load_hook_plugins(report: DiscoveryReport) -> list[tuple[str, Any]]:
    """Import the hook plugins of every usable distribution in ``report``: ``[(entry name, plugin object)]``.

    Plugins whose status is ``incompatible``, ``duplicate`` or ``error`` are skipped. A
    hook module that fails to import flags its plugin ``error`` in ``report`` and gives
    a warning naming it; the others still load.
    """
    loaded: list[tuple[str, Any]] = []
    for plugin in report.plugins:
        if plugin.status in _UNLOADED_STATUSES:
            continue
        for entry in plugin.hook_entries:
            try:
                loaded.append((entry.name, _import_target(entry.target)))
            except Exception as exc:  # isolate broken third-party hook plugins
                problem = f"hook plugin {entry.name!r} from {plugin.name} was skipped: {type(exc).__name__}: {exc}"
                plugin.flag("error", problem)
                warnings.warn(problem, stacklevel=2)
    return loaded


def make_plugin_manager(
    *, load_entry_points: bool = True, report: DiscoveryReport | None = None
) -> pluggy.PluginManager:
    """A plugin manager with ssl-core's hookspecs and the hook plugins of usable distributions.

    Args:
        load_entry_points: ``False`` gives an empty manager (tests, notebooks).
        report: the discovery report to take plugins from (default: a fresh scan).
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(HookSpecs)
    if not load_entry_points:
        return pm
    for name, plugin in load_hook_plugins(report if report is not None else scan_plugins()):
        if pm.is_registered(plugin) or pm.get_plugin(name) is not None:
            continue
        pm.register(plugin, name=name)
    return pm


def guarded(plugin: Any, label: str) -> Any:
    """``plugin`` behind a guard: the first exception in one of its hooks (or ``close()``) becomes a warning
    naming ``label``, and the plugin is switched off for the rest of the run; the run goes on.

    Example:
        >>> class Broken:
        ...     @hookimpl
        ...     def ssl_log_metrics(self, step, metrics):
        ...         raise OSError("disk full")
        >>> pm = make_plugin_manager(load_entry_points=False)
        >>> _ = pm.register(guarded(Broken(), "logger 'demo.broken'"))
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     pm.hook.ssl_log_metrics(step=1, metrics={})
        []
        >>> str(caught[0].message)
        "logger 'demo.broken' failed in ssl_log_metrics (OSError: disk full); it is off for the rest of the run"
    """
    state = {"failed": False}

    def shielded(name: str, method: Any) -> Any:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if state["failed"]:
                return None
            try:
                return method(*args, **kwargs)
            except Exception as exc:  # a logger is an extra: it never costs the run its results
                state["failed"] = True
                warnings.warn(
                    f"{label} failed in {name} ({type(exc).__name__}: {exc}); it is off for the rest of the run",
                    stacklevel=2,
                )
                return None

        return call

    shield = types.SimpleNamespace()
    for name in dir(plugin):
        method = getattr(plugin, name, None)
        if callable(method) and getattr(method, f"{PROJECT_NAME}_impl", None) is not None:
            setattr(shield, name, shielded(name, method))
    close = getattr(plugin, "close", None)
    if callable(close):
        shield.close = shielded("close", close)
    return shield
