"""Offline (issue 18): graph.planetoid and graph.tudataset say, on one line, what they tried (URL and folder),
the --root layout, and that PyG downloads automatically (there is no download option), as a ConfigError.

Nothing here touches the network: PyG's ``download`` methods raise ``URLError`` as when the machine is offline,
and DNS is disabled as a guard; the cache and roots are empty tmp folders.
"""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path
from typing import Any

import pytest

import ssl_core
from ssl_graph import GraphDataError, planetoid, tudataset


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network for PyG; ``SSL_GRAPH_CACHE`` is an empty folder, which is returned."""
    from torch_geometric.datasets import Planetoid, TUDataset

    def download(self: Any) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_dns(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "the network is disabled in this test")

    monkeypatch.setattr(Planetoid, "download", download)
    monkeypatch.setattr(TUDataset, "download", download)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # a guard: nothing reaches the real network
    cache = tmp_path / "cache"
    monkeypatch.setenv("SSL_GRAPH_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


def _one_line(caught: pytest.ExceptionInfo[GraphDataError]) -> str:
    assert isinstance(caught.value, ssl_core.ConfigError)
    message = str(caught.value)
    assert "\n" not in message and "URLError" in message
    return message


def test_planetoid_without_root_names_url_cache_and_layout(offline: Path) -> None:
    with pytest.raises(GraphDataError) as caught:
        planetoid(None, dataset="CiteSeer")
    message = _one_line(caught)
    assert "https://github.com/kimiyoung/planetoid/raw/master/data" in message
    assert str(offline / "planetoid" / "download" / "CiteSeer" / "raw") in message
    assert "--root ROOT with ROOT/CiteSeer/raw/ind.citeseer.{x,tx,allx,y,ty,ally,graph,test.index}" in message
    assert "downloads missing files automatically" in message and "no download option" in message


def test_planetoid_with_an_empty_root_names_that_folder(offline: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GraphDataError) as caught:
        planetoid(str(empty), dataset="Cora")
    message = _one_line(caught)
    assert str(empty / "Cora" / "raw") in message and "ROOT/Cora/raw/ind.cora." in message


def test_tudataset_offline_names_url_folder_and_layout(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(GraphDataError) as caught:
        tudataset(None, dataset="MUTAG")
    message = _one_line(caught)
    assert "https://www.chrsmrrs.com/graphkerneldatasets/MUTAG.zip" in message
    assert str(offline / "tu" / "MUTAG" / "raw") in message
    assert "--root ROOT with ROOT/MUTAG/raw/MUTAG_A.txt, MUTAG_graph_indicator.txt, MUTAG_graph_labels.txt" in message
    assert "no download option" in message
    with pytest.raises(GraphDataError) as caught:
        tudataset(str(tmp_path / "tu"), dataset="PROTEINS")
    assert str(tmp_path / "tu" / "PROTEINS" / "raw") in _one_line(caught)
