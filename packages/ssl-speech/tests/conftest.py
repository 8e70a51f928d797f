"""Shared fixtures: one torch thread (the CI machine is shared) and the local FSDD copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FSDD_ROOT = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    root = FSDD_ROOT.resolve()
    if not (root / "0_george_0.wav").is_file():
        pytest.skip(f"FSDD recordings are not at {root} (the shared data folder is absent)")
    return root
