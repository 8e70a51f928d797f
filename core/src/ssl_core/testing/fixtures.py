"""Pytest fixtures for plugin test suites: ``pytest_plugins = ["ssl_core.testing.fixtures"]``.

Example (a plugin's ``conftest.py`` and one of its tests)::

    pytest_plugins = ["ssl_core.testing.fixtures"]

    def test_mine_registers(ssl_registry):
        ssl_registry.register("objective", "mine.loss", MyObjective)
        assert ssl_registry.names("objective") == ["mine.loss"]
"""

from __future__ import annotations

import pytest

from .._registry import Registry

__all__ = ["ssl_registry"]


@pytest.fixture
def ssl_registry() -> Registry:
    """An empty :class:`~ssl_core.Registry` with discovery off: tests see only what they register.

    Pass it as ``registry=`` to :func:`ssl_core.run` or :func:`ssl_core.build_pipeline`
    so a test does not depend on which plugins happen to be installed.
    """
    return Registry(discover=False)
