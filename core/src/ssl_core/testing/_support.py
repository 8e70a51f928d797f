"""Helpers shared by the conformance classes: registration checks and batch comparison."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._capabilities import declared_by
from .._registry import Registry

__all__ = ["assert_declares_flags", "assert_registers", "clone_batch", "embed_dim_of", "first_difference", "flag_value"]


def assert_registers(kind: str, factory: Any) -> None:
    """Register ``factory`` in an empty registry, as discovery would; fails with core's message.

    Example:
        >>> assert_registers("dataset", lambda root=None: None)
    """
    Registry(discover=False).register(kind, "conformance.component", factory)


def flag_value(obj: Any, name: str) -> Any:
    """A declared capability flag; fails the test when it is missing.

    Example:
        >>> class Flags:
        ...     returns_tokens = True
        >>> flag_value(Flags(), "returns_tokens")
        True
    """
    assert hasattr(obj, name), f"{type(obj).__name__} must declare the class attribute {name!r}"
    return getattr(obj, name)


def assert_declares_flags(obj: Any, kind: str) -> None:
    """``obj`` declares the capability flags of ``kind`` the kit requires, each flag it declares with its type.

    The flags, their types and which are required come from ``ssl_core._capabilities.CAPABILITIES``.

    Example:
        >>> class Views:
        ...     modality = "vector"
        ...     num_views = 2
        >>> assert_declares_flags(Views(), "views")
    """
    for capability in declared_by(kind):
        if capability.must_declare:
            value = flag_value(obj, capability.name)
        elif getattr(obj, capability.name, None) is not None:
            value = getattr(obj, capability.name)
        else:
            continue
        expected = capability.value_type
        fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        assert fits, f"{type(obj).__name__}.{capability.name} must be a {expected.__name__}, got {value!r}"


def embed_dim_of(encoder: Any) -> int:
    """The encoder's ``embed_dim``; fails the test unless it is a positive int.

    Example:
        >>> class Enc:
        ...     embed_dim = 8
        >>> embed_dim_of(Enc())
        8
    """
    dim = getattr(encoder, "embed_dim", None)
    assert isinstance(dim, int) and not isinstance(dim, bool) and dim > 0, (
        f"{type(encoder).__name__}.embed_dim must be a positive int, got {dim!r}"
    )
    return dim


def clone_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``batch`` whose tensors are cloned, to detect in-place edits.

    Example:
        >>> import torch
        >>> b = {"x": torch.zeros(2)}
        >>> clone_batch(b)["x"] is b["x"]
        False
    """
    return {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}


def first_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """The first key whose tensors differ between two batches (``None`` when all equal).

    Example:
        >>> import torch
        >>> first_difference({"x": torch.zeros(2)}, {"x": torch.ones(2)})
        'x'
    """
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, Tensor) and isinstance(right, Tensor):
            if left.shape != right.shape or not torch.equal(left, right):
                return key
        elif isinstance(left, Tensor) or isinstance(right, Tensor):
            return key
    return None
