"""The capability flags components declare, and the modality names: one table read by every check.

``check_compatible`` (before training), ``ssl info`` (printing a component's flags), the
shape checks and the conformance kit all take flag names from :data:`CAPABILITIES`, and
docs/plugins.md lists the same table (a test compares them). Flags are class attributes
(or attributes of the built object), read with :func:`flag`; an undeclared flag has the
table's default.

Example:
    >>> CAPABILITIES["requires_tokens"].provided_by
    'returns_tokens'
    >>> [c.name for c in declared_by("views")]
    ['modality', 'output_modality', 'num_views']
    >>> class Encoder:
    ...     returns_tokens = True
    >>> flag(Encoder(), "returns_tokens"), flag(Encoder(), "returns_layers")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "ANY_MODALITY",
    "CAPABILITIES",
    "MODALITIES",
    "Capability",
    "declared_by",
    "flag",
    "markdown_table",
    "modality_table",
    "requirements",
]


@dataclass(frozen=True)
class Capability:
    """One capability flag: its name, the component kinds that declare it, its default and meaning."""

    name: str
    kinds: tuple[str, ...]
    default: Any
    meaning: str
    value_type: type = bool
    """The type of a declared value (``int`` excludes ``bool``)."""
    must_declare: bool = False
    """The conformance kit fails a component of one of ``kinds`` that does not declare it."""
    provided_by: str | None = None
    """For an objective's ``requires_*`` flag: the encoder flag that satisfies it."""
    asks: str = ""
    """For a ``requires_*`` flag: what it asks of the encoder, in the words of error messages."""


_TABLE: tuple[Capability, ...] = (
    Capability(
        "modality",
        ("encoder", "views"),
        "any",
        "the modality of the batches the component takes (see MODALITIES); must match the dataset's "
        "`DatasetSplits.modality` (views) or what the views produce (encoder)",
        value_type=str,
        must_declare=True,
    ),
    Capability(
        "output_modality",
        ("views",),
        None,
        "views that turn one modality into another: the modality of the views they produce (default: `modality`)",
        value_type=str,
    ),
    Capability(
        "supports_token_mask",
        ("encoder",),
        False,
        "`forward(batch, token_mask=...)` hides the masked tokens from the encoder",
        must_declare=True,
    ),
    Capability(
        "returns_tokens",
        ("encoder",),
        False,
        "`Features.tokens` holds per-token features `[B, T, D]`",
        must_declare=True,
    ),
    Capability(
        "returns_layers",
        ("encoder",),
        False,
        "`Features.layers` holds per-layer hidden states",
        must_declare=True,
    ),
    Capability(
        "requires_tokens",
        ("objective",),
        False,
        "needs an encoder with `returns_tokens`",
        provided_by="returns_tokens",
        asks="per-token features (Features.tokens)",
        must_declare=True,
    ),
    Capability(
        "requires_token_mask",
        ("objective",),
        False,
        "needs an encoder with `supports_token_mask` (masked modelling)",
        provided_by="supports_token_mask",
        asks="a token_mask argument (masked modelling)",
        must_declare=True,
    ),
    Capability(
        "requires_layers",
        ("objective",),
        False,
        "needs an encoder with `returns_layers`",
        provided_by="returns_layers",
        asks="per-layer hidden states (Features.layers)",
    ),
    Capability("num_views", ("views",), None, "how many views per sample the generator makes", value_type=int),
    Capability(
        "min_views",
        ("objective",),
        None,
        "the fewest views per sample the objective works with",
        value_type=int,
    ),
    Capability(
        "embed_dim",
        ("encoder", "objective"),
        None,
        "the width of `Features.pooled` (required of encoders); an objective storing it must match the encoder's",
        value_type=int,
    ),
    Capability(
        "higher_is_better",
        ("evaluator",),
        None,
        "whether larger values of the evaluator's metrics are better (required of evaluators)",
        must_declare=True,
    ),
)

CAPABILITIES: Final[Mapping[str, Capability]] = MappingProxyType({c.name: c for c in _TABLE})
"""Every capability flag by name, in the order of the documentation table."""

ANY_MODALITY: Final = "any"

MODALITIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "vector": "a fixed-size feature vector per sample, `x: [B, D]` (core.digits, core.mlp)",
        "image": "images, `x: [B, C, H, W]` (ssl-vision)",
        "audio": "waveforms, `x: [B, T]` with `lengths` (ssl-speech)",
        "timeseries": "multivariate series, `x: [B, T, C]` (ssl-timeseries)",
        "graph": "graphs: node features `x`, `edge_index` (ssl-graph)",
        ANY_MODALITY: "matches every modality (generic components, test doubles)",
    }
)
"""The modality names first-party datasets, encoders and views use; plugins may add their own strings."""


def flag(obj: Any, name: str) -> Any:
    """The value of capability ``name`` declared by ``obj``, else the table's default."""
    return getattr(obj, name, CAPABILITIES[name].default)


def declared_by(kind: str) -> tuple[Capability, ...]:
    """The capabilities components of ``kind`` may declare, in table order."""
    return tuple(c for c in _TABLE if kind in c.kinds)


def requirements() -> tuple[Capability, ...]:
    """The objective flags that need an encoder flag (``requires_*`` -> ``provided_by``)."""
    return tuple(c for c in _TABLE if c.provided_by is not None)


def markdown_table() -> str:
    """The Markdown table of :data:`CAPABILITIES` printed in docs/plugins.md (a test keeps them equal)."""
    lines = [
        "| Flag | Declared by | Type | Default | Conformance kit | Meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in _TABLE:
        kit = "must declare" if c.must_declare else "type checked if declared"
        row = [f"`{c.name}`", ", ".join(c.kinds), c.value_type.__name__, f"`{c.default!r}`", kit, c.meaning]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def modality_table() -> str:
    """The Markdown table of :data:`MODALITIES` printed in docs/plugins.md."""
    lines = ["| Modality | Batches |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in MODALITIES.items()]
    return "\n".join(lines)
