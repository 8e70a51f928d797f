"""Errors that say what went wrong and what to do about it."""

from __future__ import annotations

__all__ = [
    "ComponentNotFoundError",
    "ConfigError",
    "IncompatibleComponentsError",
    "NonFiniteLossError",
    "PluginLoadError",
    "SSLCoreError",
]


class SSLCoreError(Exception):
    """Base class of every error raised on purpose by ssl-core."""


class PluginLoadError(SSLCoreError):
    """A plugin could not be loaded or does not fit a contract. Carries the plugin's name.

    Example:
        >>> str(PluginLoadError("ssl-foo", "cannot import ssl_foo"))
        'plugin ssl-foo: cannot import ssl_foo'
    """

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin}: {message}")


class ComponentNotFoundError(SSLCoreError, KeyError):
    """No component of that kind and name; lists close matches."""

    def __init__(self, kind: str, name: str, suggestions: list[str], reason: str | None = None) -> None:
        self.kind, self.name, self.suggestions = kind, name, suggestions
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"unknown {kind} {name!r}{why}{hint} Run `ssl plugins` to list what is installed, "
            f"or `pip install` the plugin that provides it."
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ConfigError(SSLCoreError, ValueError):
    """A pipeline configuration is invalid; the message names the key and a fix."""


class IncompatibleComponentsError(ConfigError):
    """Two components cannot work together; raised before training starts."""


class NonFiniteLossError(SSLCoreError, FloatingPointError):
    """The loss became NaN or inf; training stopped and the last good checkpoint is kept."""

    def __init__(self, step: int, value: float, checkpoint: str | None) -> None:
        self.step, self.value, self.checkpoint = step, value, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
        super().__init__(
            f"loss is {value} at step {step}; training stopped and {kept}. "
            f"Try a lower learning rate (--set train.lr=...), gradient clipping (train.grad_clip), "
            f"or precision='fp32'; resume with --resume."
        )
