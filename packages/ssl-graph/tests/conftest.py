"""Shared fixtures: one torch thread (the CI machine is shared), the local Cora copy, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PLANETOID_ROOT = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "planetoid"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processed Planetoid files go to a per-session temporary cache, never to ~/.cache or the data folder."""
    monkeypatch.setenv("SSL_GRAPH_CACHE", str(tmp_path_factory.getbasetemp() / "ssl-graph-cache"))


@pytest.fixture(scope="session")
def planetoid_root() -> Path:
    root = PLANETOID_ROOT.resolve()
    if not (root / "Cora" / "raw" / "ind.cora.x").is_file():
        pytest.skip(f"Cora's raw files are not at {root}/Cora/raw (the shared data folder is absent)")
    return root
