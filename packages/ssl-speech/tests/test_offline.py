"""Offline (issue 18): speech.fsdd and speech.librispeech say, on one line, what they tried, the --root layout
and ``download = true`` (off by default), as a ConfigError.

Nothing here touches the network: the downloaders (urllib for FSDD, torchaudio's for LibriSpeech) raise
``URLError`` as when the machine is offline, and DNS is disabled as a guard; roots are empty tmp folders.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import ssl_core
from ssl_speech import AudioDataError, fsdd, librispeech
from ssl_speech._data import FSDD_URL

FSDD_LAYOUT = "--root ROOT with FSDD's recordings as ROOT/recordings/{digit}_{speaker}_{take}.wav"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network: urllib and torchaudio's downloader fail with ``URLError``; returns the URLs attempted."""
    import torchaudio.datasets.librispeech as torchaudio_librispeech

    attempts: list[str] = []

    def urlopen(request: Any, *args: Any, **kwargs: Any) -> None:
        attempts.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def download_url_to_file(url: str, *args: Any, **kwargs: Any) -> None:
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_dns(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "the network is disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(torchaudio_librispeech, "download_url_to_file", download_url_to_file)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # a guard: nothing reaches the real network
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return attempts


def _one_line(exc: pytest.ExceptionInfo[AudioDataError]) -> str:
    assert isinstance(exc.value, ssl_core.ConfigError)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_fsdd_download_offline_names_url_folder_layout_and_download(offline: list[str], tmp_path: Path) -> None:
    with pytest.raises(AudioDataError) as caught:
        fsdd(str(tmp_path / "fsdd"), download=True, progress=False)
    message = _one_line(caught)
    assert FSDD_URL in message and str(tmp_path / "fsdd" / "recordings") in message and "URLError" in message
    assert FSDD_LAYOUT in message and "download = true" in message
    assert offline == [FSDD_URL]


def test_fsdd_without_download_tries_nothing_and_says_download_is_off(offline: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AudioDataError) as caught:
        fsdd(str(empty), progress=False)
    message = _one_line(caught)
    assert str(empty) in message and FSDD_LAYOUT in message
    assert "set download = true" in message and FSDD_URL in message and "off by default" in message
    with pytest.raises(AudioDataError) as caught:
        fsdd(None)
    assert FSDD_LAYOUT in _one_line(caught) and "download = true" in str(caught.value)
    assert offline == []


def test_librispeech_download_offline_names_url_folder_layout_and_download(offline: list[str], tmp_path: Path) -> None:
    root = tmp_path / "libri"
    with pytest.raises(AudioDataError) as caught:
        librispeech(str(root), subset="dev-clean", download=True, progress=False)
    message = _one_line(caught)
    url = "http://www.openslr.org/resources/12/dev-clean.tar.gz"
    assert url in message and str(root / "LibriSpeech" / "dev-clean") in message and "URLError" in message
    assert "--root ROOT with ROOT/LibriSpeech/dev-clean/<speaker>/<chapter>/*.flac" in message
    assert "download = true" in message
    assert offline == [url]


def test_librispeech_without_download_says_download_is_off(offline: list[str], tmp_path: Path) -> None:
    with pytest.raises(AudioDataError) as caught:
        librispeech(str(tmp_path), subset="dev-clean", progress=False)
    message = _one_line(caught)
    assert "ROOT/LibriSpeech/dev-clean/" in message and "set download = true" in message and "off by default" in message
    assert offline == []
