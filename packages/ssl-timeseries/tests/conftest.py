"""Shared fixtures: one torch thread (the CI machine is shared) and small real data."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
