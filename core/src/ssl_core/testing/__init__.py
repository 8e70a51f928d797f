"""Conformance kit for plugin authors: subclass, fill in small factories, inherit the tests.

Each ``*Conformance`` class holds ``test_*`` methods that check one contract by
behaviour. Subclass it in a class whose name starts with ``Test`` in your own
pytest suite and implement its ``make_*`` factories; the base classes themselves
are not collected (their names do not start with ``Test``).

Test doubles (:class:`ToyEncoder`, :func:`toy_batch`, :func:`toy_views`,
:func:`toy_labelled_batches`) let one box be tested without the others, and
``pytest_plugins = ["ssl_core.testing.fixtures"]`` gives an ``ssl_registry``
fixture with discovery switched off. This package imports torch and pytest;
``import ssl_core`` never imports it.

Example:
    >>> from ssl_core.testing import ObjectiveConformance
    >>> class TestMyObjective(ObjectiveConformance):  # doctest: +SKIP
    ...     def make_objective(self, embed_dim):
    ...         return MyObjective(embed_dim=embed_dim)
"""

from __future__ import annotations

from ._dataset import DatasetConformance
from ._doubles import ToyEncoder, toy_batch, toy_labelled_batches, toy_views
from ._encoder import EncoderConformance
from ._evaluator import EvaluatorConformance
from ._imports import import_cycles, import_graph, private_core_imports
from ._objective import ObjectiveConformance
from ._package import PluginPackageConformance
from ._views import ViewGeneratorConformance

__all__ = [
    "DatasetConformance",
    "EncoderConformance",
    "EvaluatorConformance",
    "ObjectiveConformance",
    "PluginPackageConformance",
    "ToyEncoder",
    "ViewGeneratorConformance",
    "import_cycles",
    "import_graph",
    "private_core_imports",
    "toy_batch",
    "toy_labelled_batches",
    "toy_views",
]
