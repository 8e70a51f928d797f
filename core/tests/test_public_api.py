"""The public surface: every exported name resolves, and importing ssl_core stays light."""

from __future__ import annotations

import subprocess
import sys

import ssl_core


def test_all_names_resolve_and_all_is_complete() -> None:
    for name in ssl_core.__all__:
        assert getattr(ssl_core, name) is not None, name
    public_lazy = {n for n in ssl_core._LAZY if not n.startswith("_")}
    assert public_lazy <= set(ssl_core.__all__), public_lazy - set(ssl_core.__all__)


def test_import_does_not_load_torch() -> None:
    code = "import sys, ssl_core; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_python_dash_m_is_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "ssl_core", "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"ssl-core {ssl_core.__version__}"
