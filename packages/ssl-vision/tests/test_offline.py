"""Offline (issue 18): a CIFAR download that fails says, on one line, what was tried, the --root layouts and
``download = true``; ``ssl run vision.mae`` prints that line and exits 2 instead of a urllib traceback.

Nothing here touches the network: ``urllib.request.urlopen`` (torchvision's downloader) raises ``URLError`` as
when the machine is offline, and DNS is disabled as a guard; ``HOME`` and the caches point at an empty folder.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import ssl_core
from ssl_vision import ImageDataError, cifar10, cifar100

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """No network (every URL open fails with ``URLError``), an empty ``HOME``; counts the download attempts."""
    attempts: list[str] = []

    def urlopen(request: Any, *args: Any, **kwargs: Any) -> None:
        attempts.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_dns(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "the network is disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # a guard: nothing reaches the real network
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    return {"home": home, "attempts": attempts}


def test_cifar10_without_root_names_url_cache_folder_layouts_and_download(offline: dict[str, Any]) -> None:
    with pytest.raises(ImageDataError) as caught:
        cifar10()
    message = str(caught.value)
    cache = offline["home"] / ".cache" / "ssl-vision" / "cifar10"
    assert isinstance(caught.value, ssl_core.ConfigError) and "\n" not in message
    assert CIFAR10_URL in message and str(cache) in message and "URLError" in message  # what was tried, and where
    assert "--root ROOT with ROOT/cifar-10-batches-py/" in message  # the layouts --root accepts
    assert "ROOT/train/<class>/*.png + ROOT/test/<class>/*.png" in message
    assert "download = true (the default)" in message
    assert offline["attempts"] and set(offline["attempts"]) == {CIFAR10_URL}


def test_cifar100_with_an_empty_root_names_that_folder(offline: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageDataError) as caught:
        cifar100(str(empty))
    message = str(caught.value)
    assert "cifar-100-python.tar.gz" in message and str(empty / "cifar-100-python") in message
    assert "ROOT/cifar-100-python/" in message and "ROOT/train/<class>/" in message
    assert "download = true" in message and "\n" not in message


def test_cifar10_with_download_false_tries_nothing_and_names_the_option(
    offline: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ImageDataError, match=r"download = false.*ROOT/cifar-10-batches-py/.*set download = true"):
        cifar10(str(tmp_path / "nothing"), download=False)
    assert offline["attempts"] == []


def test_ssl_run_vision_mae_offline_prints_one_line_and_exits_2(
    offline: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "vision.mae", "--out", str(tmp_path / "run"), "--set", "train.steps=1"]
    assert ssl_core.cli_main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ssl run: error: dataset 'vision.cifar10': CIFAR-10 is not in ")
    assert CIFAR10_URL in lines[0] and "ROOT/cifar-10-batches-py/" in lines[0] and "download = true" in lines[0]
    assert "Traceback" not in err
