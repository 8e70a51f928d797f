"""Errors that say what went wrong and what to do about it."""

from __future__ import annotations

__all__ = [
    "EXIT_PREEMPTED",
    "ComponentNotFoundError",
    "ConfigError",
    "EncoderWeightsMismatchError",
    "IncompatibleComponentsError",
    "NonFiniteLossError",
    "PluginLoadError",
    "PreemptedError",
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
    """No usable component of that kind and name; says why when discovery knows, and lists close matches.

    ``status`` is the providing plugin's discovery status when the name is installed but
    unavailable (``"duplicate"``, ``"incompatible"``, ``"error"``); ``actual_kind`` the kind
    the name does have when it was asked for as another kind.

    Example:
        >>> str(ComponentNotFoundError("objective", "core.noise", [], actual_kind="views"))
        "'core.noise' is a views component, not an objective. Run `ssl plugins` to list the objectives."
    """

    def __init__(
        self,
        kind: str,
        name: str,
        suggestions: list[str],
        reason: str | None = None,
        *,
        status: str | None = None,
        actual_kind: str | None = None,
    ) -> None:
        self.kind, self.name, self.suggestions = kind, name, suggestions
        self.reason, self.status, self.actual_kind = reason, status, actual_kind
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        why = f" ({reason})" if reason else ""
        if actual_kind is not None:
            message = (
                f"{name!r} is {_article(actual_kind)} {actual_kind} component, not {_article(kind)} {kind}"
                f"{hint or '.'} Run `ssl plugins` to list the {_plural(kind)}."
            )
        else:
            message = f"unknown {kind} {name!r}{why}{hint} {_FIXES.get(status or '', _FIXES[''])}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


_FIXES = {
    "": "Run `ssl plugins` to list what is installed, or `pip install` the plugin that provides it.",
    "duplicate": "Several installed distributions provide this name: `pip uninstall` all but one "
    "(`ssl plugins` shows which).",
    "incompatible": "Run `ssl plugins` to see which versions disagree.",
    "error": "Run `ssl plugins` (or `ssl plugins --check`) for details; reinstalling the plugin usually helps.",
}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _plural(kind: str) -> str:
    return {"views": "views", "task": "tasks"}.get(kind, kind + "s")


class ConfigError(SSLCoreError, ValueError):
    """A pipeline configuration is invalid; the message names the key and a fix."""


class IncompatibleComponentsError(ConfigError):
    """Two components cannot work together; raised before training starts."""


class EncoderWeightsMismatchError(IncompatibleComponentsError):
    """Given encoder weights (an earlier stage's, a checkpoint's) do not fit the encoder built here."""


class PreemptedError(SSLCoreError):
    """SIGTERM or SIGUSR1 arrived: a checkpoint was written at the step boundary; continue with ``--resume``.

    ``ssl run`` exits with :data:`EXIT_PREEMPTED` (75, ``EX_TEMPFAIL``: try again later), which a
    scheduler's requeue logic can tell apart from a failure.
    """

    def __init__(self, signal_name: str, step: int, checkpoint: str | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        kept = f"checkpoint {checkpoint} written" if checkpoint else "no output directory, so no checkpoint"
        super().__init__(f"{signal_name} received: stopped after step {step}, {kept}; continue with --resume")


EXIT_PREEMPTED = 75
"""Exit status of ``ssl run`` after a pre-emption signal (``EX_TEMPFAIL``)."""


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
