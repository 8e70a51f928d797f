"""Plugin discovery from installed distributions' metadata, without importing them.

Listing reads ``entry_points.txt`` and ``METADATA`` only: no plugin module and no
torch is imported, so ``ssl plugins`` stays fast. Importing is the job of
:mod:`ssl_core._registry`, which loads one component when it is asked for.

Example:
    >>> report = scan_plugins()
    >>> any(p.name == "ssl-core" for p in report.plugins)
    True
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final, Literal

from ._metadata import InstalledDistribution, scan_distributions
from ._version import PLUGIN_API_VERSION, __version__

__all__ = [
    "COMPONENT_GROUPS",
    "HOOKS_GROUP",
    "PLUGINS_GROUP",
    "ComponentEntry",
    "DiscoveryReport",
    "PluginStatus",
    "Status",
    "scan_plugins",
]

COMPONENT_GROUPS: Final[dict[str, str]] = {
    "encoder": "ssl_core.encoders",
    "views": "ssl_core.views",
    "objective": "ssl_core.objectives",
    "evaluator": "ssl_core.evaluators",
    "dataset": "ssl_core.datasets",
    "recipe": "ssl_core.recipes",
    "task": "ssl_core.tasks",
    "logger": "ssl_core.loggers",
    "exporter": "ssl_core.exporters",
}
"""Component kind -> entry-point group."""

PLUGINS_GROUP: Final = "ssl_core.plugins"
"""Names a distribution as a plugin: ``<plugin> = "<module>"``."""

HOOKS_GROUP: Final = "ssl_core.hooks"
"""Pluggy hook implementations: ``<name> = "<module or module:object>"``."""

CORE_DISTRIBUTION: Final = "ssl-core"
CORE_PREFIX: Final = "core"
"""The prefix of ssl-core's own components (``core.mlp``); other distributions declare theirs in
``ssl_core.plugins``."""

Status = Literal["ok", "incompatible", "error", "duplicate"]


@dataclass(frozen=True)
class ComponentEntry:
    """One component declared by a distribution (nothing imported yet)."""

    kind: str
    name: str
    target: str
    distribution: str

    @property
    def module(self) -> str:
        """The module that defines the component."""
        return self.target.partition(":")[0].strip()


@dataclass
class PluginStatus:
    """What discovery knows about one distribution that extends ssl-core."""

    name: str
    version: str
    status: Status = "ok"
    problems: list[str] = field(default_factory=list)
    requirement: str | None = None
    components: list[ComponentEntry] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    hook_entries: list[ComponentEntry] = field(default_factory=list)
    """The ``ssl_core.hooks`` entry points (kind ``"hooks"``), with their names."""

    warnings: list[str] = field(default_factory=list)
    """Problems that leave the plugin usable (a component named outside its prefix): shown, not fatal."""
    prefixes: list[str] = field(default_factory=list)
    """The plugin names it declares in ``ssl_core.plugins`` (``core`` for ssl-core): its components' prefixes."""

    def warn(self, message: str) -> None:
        """Record a warning; the status is unchanged."""
        self.warnings.append(message)

    def flag(self, status: Status, problem: str) -> None:
        """Record a problem; the first non-ok status wins, later ones add detail."""
        if self.status == "ok":
            self.status = status
        self.problems.append(problem)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "prefixes": list(self.prefixes),
            "requires_core": self.requirement,
            "components": [{"kind": c.kind, "name": c.name, "target": c.target} for c in self.components],
            "hooks": list(self.hooks),
        }


@dataclass
class DiscoveryReport:
    """All plugins found, plus the components that can be loaded by name."""

    core_version: str
    plugins: list[PluginStatus]
    usable: dict[str, dict[str, ComponentEntry]]
    """kind -> name -> entry, for components whose plugin is not incompatible and whose name is unique."""

    @property
    def problems(self) -> list[PluginStatus]:
        """Plugins whose status is not ``ok``."""
        return [p for p in self.plugins if p.status != "ok"]

    def plugin_of(self, distribution: str) -> PluginStatus | None:
        """The status of one distribution, by name."""
        key = _canonical(distribution)
        return next((p for p in self.plugins if _canonical(p.name) == key), None)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "core_version": self.core_version,
            "plugin_api": PLUGIN_API_VERSION,
            "plugins": [p.to_dict() for p in self.plugins],
        }


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _core_requirement(dist: InstalledDistribution) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    for line in dist.requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _canonical(req.name) == CORE_DISTRIBUTION and (req.marker is None or req.marker.evaluate()):
            return str(req.specifier) or "*"
    return None


def _check_requirement(plugin: PluginStatus, core_version: str) -> None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if plugin.requirement in (None, "*"):
        return
    try:
        spec = SpecifierSet(plugin.requirement or "")
    except InvalidSpecifier:
        plugin.flag("error", f"unparseable ssl-core requirement {plugin.requirement!r}")
        return
    if not spec.contains(core_version, prereleases=True):
        plugin.flag(
            "incompatible",
            f"requires ssl-core{plugin.requirement} but ssl-core {core_version} is installed "
            f"(plugin API {PLUGIN_API_VERSION}); upgrade the plugin or install a matching ssl-core",
        )


def _check_module_exists(plugin: PluginStatus, module: str) -> None:
    top = module.split(".", 1)[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError) as exc:  # pragma: no cover - odd finders
        plugin.flag("error", f"cannot locate module {top!r}: {exc}")
        return
    if not found:
        plugin.flag("error", f"module {top!r} named by an entry point is not installed")


def _prefix(name: str) -> str:
    return name.partition(".")[0] if "." in name else ""


def _owns(plugin: PluginStatus, name: str) -> bool:
    """Whether ``name`` is under one of the plugin's declared prefixes (``<plugin>.<name>``)."""
    return _prefix(name) in plugin.prefixes


def _check_prefixes(plugin: PluginStatus) -> None:
    """Warn about component names outside the plugin's declared prefixes (they stay usable)."""
    if not plugin.prefixes:
        if plugin.components:
            plugin.warn(
                "declares no ssl_core.plugins entry point (<plugin> = <package>), so its component names "
                "have no prefix of their own"
            )
        return
    expected = " or ".join(f"'{p}.'" for p in plugin.prefixes)
    for entry in plugin.components:
        if not _owns(plugin, entry.name):
            short = entry.name.rpartition(".")[2]
            plugin.warn(
                f"{entry.kind} {entry.name!r} is outside this plugin's prefix {expected}: names are "
                f"<plugin>.<name>, e.g. '{plugin.prefixes[0]}.{short}'"
            )


def scan_plugins() -> DiscoveryReport:
    """Read every installed distribution's entry points and report per-plugin status.

    Nothing is imported beyond locating top-level modules (``find_spec`` does not
    execute them). Problems are recorded per plugin; nothing raises.
    """
    plugins: dict[str, PluginStatus] = {}
    groups = {group: kind for kind, group in COMPONENT_GROUPS.items()}
    for dist in scan_distributions():
        key = _canonical(dist.name)
        plugin = PluginStatus(name=dist.name, version=dist.version)
        plugins[key] = plugin
        if key != CORE_DISTRIBUTION:
            plugin.requirement = _core_requirement(dist)
            plugin.prefixes = sorted({name for group, name, _ in dist.entry_points if group == PLUGINS_GROUP})
        else:
            plugin.prefixes = [CORE_PREFIX]
        for group, name, value in dist.entry_points:
            if group in groups:
                plugin.components.append(ComponentEntry(groups[group], name, value, dist.name))
            elif group == HOOKS_GROUP:
                plugin.hooks.append(value)
                plugin.hook_entries.append(ComponentEntry("hooks", name, value, dist.name))
            elif group != PLUGINS_GROUP:
                plugin.flag("error", f"unknown entry-point group {group!r} (known: {', '.join(sorted(groups))})")
            if ":" in value and not value.partition(":")[0].strip():
                plugin.flag("error", f"entry point {name!r} has no module in {value!r}")
        for module in sorted({c.module for c in plugin.components} | {h.partition(":")[0] for h in plugin.hooks}):
            if module:
                _check_module_exists(plugin, module)
        _check_requirement(plugin, __version__)
        _check_prefixes(plugin)

    usable: dict[str, dict[str, ComponentEntry]] = {kind: {} for kind in COMPONENT_GROUPS}
    owners: dict[tuple[str, str], list[ComponentEntry]] = defaultdict(list)
    for plugin in plugins.values():
        if plugin.status == "incompatible":
            continue
        for entry in plugin.components:
            owners[(entry.kind, entry.name)].append(entry)
    for (kind, name), entries in owners.items():
        if len(entries) == 1:
            usable[kind][name] = entries[0]
            continue
        rightful = [e for e in entries if _owns(plugins[_canonical(e.distribution)], e.name)]
        if len(rightful) == 1:  # a name under another plugin's prefix cannot take that plugin's component away
            owner = rightful[0]
            usable[kind][name] = owner
            for entry in entries:
                if entry is not owner:
                    plugins[_canonical(entry.distribution)].flag(
                        "duplicate",
                        f"{kind} {name!r} is also provided by {owner.distribution}, which owns the "
                        f"'{_prefix(name)}.' prefix: that one is loaded and this one ignored; rename this one",
                    )
                    plugins[_canonical(owner.distribution)].warn(
                        f"{entry.distribution} also registers {kind} {name!r} (outside its prefix); "
                        "this plugin's is loaded"
                    )
            continue
        dists = sorted({e.distribution for e in entries})
        for entry in entries:
            others = ", ".join(d for d in dists if d != entry.distribution) or entry.distribution
            plugins[_canonical(entry.distribution)].flag(
                "duplicate",
                f"{kind} {name!r} is also provided by {others}; neither is loaded: uninstall one of them "
                "(`pip uninstall`), or ask the authors to rename",
            )
    ordered = sorted(plugins.values(), key=lambda p: (_canonical(p.name) != CORE_DISTRIBUTION, _canonical(p.name)))
    return DiscoveryReport(core_version=__version__, plugins=ordered, usable=usable)
