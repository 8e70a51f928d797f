"""Offline (issue 18): timeseries.ucr loads the sets shipped in aeon's wheel without the network, and for the
others says, on one line, what it tried (the Zenodo record and the folder), the --root layout, and that aeon
downloads automatically (there is no download option), as a ConfigError.

Nothing here touches the network: aeon's Zenodo downloader raises ``URLError`` as when the machine is offline,
and DNS is disabled as a guard; ``AEON_DATA`` and roots are empty tmp folders.
"""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ssl_core
from ssl_timeseries import ucr
from ssl_timeseries._data import SeriesDataError


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network for aeon; ``AEON_DATA`` is an empty folder; returns the Zenodo records asked for."""
    import aeon.datasets._data_loaders as loaders

    attempts: list[str] = []

    def download(record_id: Any, target_dir: str) -> set[str]:
        attempts.append(str(record_id))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_dns(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "the network is disabled in this test")

    monkeypatch.setattr(loaders, "_download_all_zenodo_files", download)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # a guard: nothing reaches the real network
    monkeypatch.setenv("AEON_DATA", str(tmp_path / "aeon_data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return attempts


def _one_line(caught: pytest.ExceptionInfo[SeriesDataError]) -> str:
    assert isinstance(caught.value, ssl_core.ConfigError)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_set_not_shipped_with_aeon_names_record_folder_and_layout(offline: list[str], tmp_path: Path) -> None:
    from aeon.datasets.tsc_datasets import tsc_zenodo

    with pytest.raises(SeriesDataError) as caught:
        ucr(dataset="Adiac")
    message = _one_line(caught)
    assert f"https://zenodo.org/records/{tsc_zenodo['Adiac']}" in message and "URLError" in message
    assert str(tmp_path / "aeon_data" / "Adiac") in message
    assert "--root ROOT with ROOT/Adiac/Adiac_TRAIN.ts + ROOT/Adiac/Adiac_TEST.ts" in message
    assert "automatically" in message and "no download option" in message
    assert offline == [str(tsc_zenodo["Adiac"])]


def test_an_empty_root_is_named_as_the_folder_looked_in(offline: list[str], tmp_path: Path) -> None:
    with pytest.raises(SeriesDataError) as caught:
        ucr(str(tmp_path / "ucr"), dataset="Beef")
    message = _one_line(caught)
    assert str(tmp_path / "ucr" / "Beef") in message and "ROOT/Beef/Beef_TRAIN.ts" in message


def test_sets_shipped_with_aeon_load_offline_even_with_an_empty_root(offline: list[str], tmp_path: Path) -> None:
    assert len(ucr(str(tmp_path / "empty"), dataset="GunPoint").train) == 50
    assert offline == []  # no download attempted for a set in aeon's wheel


def test_a_copy_under_root_comes_first(offline: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "ucr" / "Toy"
    folder.mkdir(parents=True)
    header = "@problemName Toy\n@timestamps false\n@missing false\n@univariate true\n@equalLength true\n"
    header += "@seriesLength 4\n@classLabel true a b\n@data\n"
    rows = ["1,2,3,4:a", "4,3,2,1:b", "1,2,3,5:a", "5,3,2,1:b"]
    for part in ("TRAIN", "TEST"):
        (folder / f"Toy_{part}.ts").write_text(header + "\n".join(rows) + "\n")
    splits = ucr(str(tmp_path / "ucr"), dataset="Toy", normalize="none")
    assert len(splits.train) == 4 and splits.num_classes == 2
    assert np.allclose(splits.train[0][0].squeeze(-1).numpy(), [1, 2, 3, 4])
    assert offline == []
