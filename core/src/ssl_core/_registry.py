"""The component registry: lazy loading from entry points, manual registration.

A :class:`Registry` starts from discovery (metadata only) and imports a component
the first time it is asked for. A broken plugin only fails the components it
provides, with an error that names the plugin; every other plugin keeps working.

Example:
    >>> reg = Registry(discover=False)
    >>> reg.register("dataset", "demo.empty", lambda root=None: None)
    >>> reg.names("dataset")
    ['demo.empty']
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from ._checks import check_component
from ._discovery import COMPONENT_GROUPS, ComponentEntry, DiscoveryReport, PluginStatus, scan_plugins
from ._errors import ComponentNotFoundError, PluginLoadError

__all__ = ["Registry", "closest", "default_registry"]


def closest(name: str, choices: list[str] | tuple[str, ...] | set[str], n: int = 3) -> list[str]:
    """The closest valid names to a misspelled one (``difflib``), best first.

    Example:
        >>> closest("core.knm", ["core.knn", "core.linear_probe"])
        ['core.knn']
    """
    choices = sorted(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:  # match on the part after the plugin prefix, e.g. "knn" -> "core.knn"
        short = {c.rsplit(".", 1)[-1]: c for c in choices}
        found = [short[s] for s in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(short), n=n, cutoff=0.6)]
    return found


class Registry:
    """Named components of each kind: ``encoder``, ``views``, ``objective``, ``evaluator``, ``dataset``, ``recipe``.

    Args:
        discover: read installed plugins' entry points; ``False`` gives an empty
            registry for tests and notebooks.
        strict: raise on any plugin problem (incompatible, duplicate, missing module)
            instead of isolating it.
        report: a discovery report to use instead of scanning again.
    """

    def __init__(self, *, discover: bool = True, strict: bool = False, report: DiscoveryReport | None = None) -> None:
        self._report: DiscoveryReport | None = report if report is not None else (scan_plugins() if discover else None)
        self._loaded: dict[tuple[str, str], Any] = {}
        self._manual: dict[str, dict[str, Any]] = {kind: {} for kind in COMPONENT_GROUPS}
        if strict and self._report is not None and self._report.problems:
            details = "; ".join(f"{p.name}: {p.status} ({'; '.join(p.problems)})" for p in self._report.problems)
            raise PluginLoadError("<several>", f"plugin problems in strict mode: {details}")

    @property
    def report(self) -> DiscoveryReport | None:
        """The discovery report (``None`` when discovery is off)."""
        return self._report

    def _entries(self, kind: str) -> dict[str, ComponentEntry]:
        if self._report is None:
            return {}
        return self._report.usable.get(kind, {})

    def _check_kind(self, kind: str) -> None:
        if kind not in COMPONENT_GROUPS:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {', '.join(COMPONENT_GROUPS)}")

    def names(self, kind: str) -> list[str]:
        """All names of one kind, sorted."""
        self._check_kind(kind)
        return sorted(set(self._entries(kind)) | set(self._manual[kind]))

    def register(self, kind: str, name: str, obj: Any, *, replace: bool = False) -> None:
        """Register a component by hand; its shape is checked now (signature inspection).

        Raises:
            ValueError: the name is taken (pass ``replace=True``) or the object does
                not fit the contract of ``kind``.
        """
        self._check_kind(kind)
        if not replace and (name in self._manual[kind] or name in self._entries(kind)):
            raise ValueError(f"{kind} {name!r} is already registered; pass replace=True to override it")
        check_component(kind, name, obj)
        self._manual[kind][name] = obj
        self._loaded.pop((kind, name), None)

    def get(self, kind: str, name: str) -> Any:
        """The component factory (class or function) registered under ``name``.

        Raises:
            ComponentNotFoundError: unknown name; the message lists close matches.
            PluginLoadError: the providing plugin failed to import or its component
                does not fit the contract; the message names the plugin.
        """
        self._check_kind(kind)
        if name in self._manual[kind]:
            return self._manual[kind][name]
        if (kind, name) in self._loaded:
            return self._loaded[(kind, name)]
        entry = self._entries(kind).get(name)
        if entry is None:
            raise self.not_found(kind, name)
        obj = self._import(entry)
        check_component(kind, name, obj, plugin=entry.distribution)
        self._loaded[(kind, name)] = obj
        return obj

    def not_found(self, kind: str, name: str) -> ComponentNotFoundError:
        """The error for a ``kind`` called ``name`` that cannot be loaded: another kind's name, an
        unavailable plugin's (duplicate, incompatible, broken: with the reason), or a typo (close matches)."""
        self._check_kind(kind)
        suggestions = closest(name, self.names(kind))
        for other in COMPONENT_GROUPS:
            if other != kind and name in self.names(other):
                return ComponentNotFoundError(kind, name, suggestions, actual_kind=other)
        status = self.unavailable(kind, name)
        if status is None:
            return ComponentNotFoundError(kind, name, suggestions)
        reason = f"plugin {status.name} {status.version} is {status.status}: {'; '.join(status.problems)}"
        return ComponentNotFoundError(kind, name, suggestions, reason, status=status.status)

    def unavailable(self, kind: str, name: str) -> PluginStatus | None:
        """The plugin that declares ``kind`` ``name`` when discovery made it unavailable, else ``None``."""
        if self._report is None:
            return None
        for plugin in self._report.plugins:
            declares = any(c.kind == kind and c.name == name for c in plugin.components)
            if declares and plugin.status != "ok" and name not in self._entries(kind):
                return plugin
        return None

    @staticmethod
    def _import(entry: ComponentEntry) -> Any:
        module_name, _, attr = entry.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name.strip())
            for part in attr.strip().split(".") if attr.strip() else ():
                obj = getattr(obj, part)
        except Exception as exc:  # any failure inside third-party code is isolated to that plugin
            raise PluginLoadError(
                entry.distribution,
                f"cannot load {entry.kind} {entry.name!r} from {entry.target!r}: {type(exc).__name__}: {exc}",
            ) from exc
        return obj

    def build(self, kind: str, name: str, **params: Any) -> Any:
        """Look up ``name`` and call its factory with ``params``."""
        factory: Callable[..., Any] = self.get(kind, name)
        return factory(**params)


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry with discovery on (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry()
    return _DEFAULT
