import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import ssl_core._checkpoint as ckpt
from ssl_core._checkpoint import (
    CheckpointError,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)


def _state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "meta": {"name": "run", "lr": 0.1}}


def test_roundtrip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "sub" / "dir" / "step-000001.pt", _state(1))
    assert path == tmp_path / "sub" / "dir" / "step-000001.pt"
    loaded = load_checkpoint(str(path))
    assert loaded["step"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert loaded["meta"] == {"name": "run", "lr": 0.1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["step-000001.pt"]


def test_overwrite_replaces_content(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    assert load_checkpoint(path)["step"] == 2
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_crash_during_write_keeps_original_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "step-000005.pt"
    save_checkpoint(path, _state(5))
    original = path.read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_save(obj, f, *args, **kwargs)
        f.write(b"half of the next tensor")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(6))
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert load_checkpoint(path)["step"] == 5
    assert os.listdir(tmp_path) == ["step-000005.pt"]


def test_interrupt_during_write_of_new_file_leaves_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def interrupted_save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "step-000001.pt", _state(1))
    assert os.listdir(tmp_path) == []


def test_missing_file_error_names_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(missing)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncate"])
def test_corrupt_file_error_names_file(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "step-000003.pt"
    if content == "truncate":
        save_checkpoint(path, _state(3))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"step-000003\.pt.*corrupt or truncated"):
        load_checkpoint(path)


def test_non_dict_and_weights_only(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")
    save_checkpoint(tmp_path / "obj.pt", {"path": Path("x")})
    with pytest.raises(CheckpointError, match="weights_only=False"):
        load_checkpoint(tmp_path / "obj.pt")
    assert load_checkpoint(tmp_path / "obj.pt", weights_only=False)["path"] == Path("x")


def _draws(generator: torch.Generator | None = None) -> tuple:
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.normal(),
        torch.rand(4).tolist(),
        torch.randn(2, generator=generator).tolist() if generator is not None else None,
    )


def test_rng_roundtrip_reproduces_draws(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(123)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached gaussian in both python and numpy states
    np.random.normal()
    _draws(gen)
    state = capture_rng_state(gen)
    expected = _draws(gen)
    assert _draws(gen) != expected  # sanity: the streams move on

    # through a checkpoint file, with the safe loader
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    restored = load_checkpoint(tmp_path / "rng.pt")["rng"]
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    other = torch.Generator().manual_seed(7)
    restore_rng_state(restored, other)
    assert _draws(other) == expected


def test_rng_state_without_generator() -> None:
    state = capture_rng_state()
    assert "generator" not in state
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state, torch.Generator())  # a generator with nothing saved is left alone
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_latest_and_prune(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (3, 20, 1_000_000, 100):
        save_checkpoint(checkpoint_path(tmp_path, step), _state(step))
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / ".step-000999.pt.1.abcd.tmp").write_bytes(b"stale temp from a killed run")
    (tmp_path / "step-abc.pt").write_bytes(b"")
    assert checkpoint_path(tmp_path, 3).name == "step-000003.pt"
    assert latest_checkpoint(tmp_path) == tmp_path / "step-1000000.pt"

    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["step-000003.pt", "step-000020.pt"]
    assert sorted(os.listdir(tmp_path)) == [
        ".step-000999.pt.1.abcd.tmp",
        "notes.txt",
        "step-000100.pt",
        "step-1000000.pt",
        "step-abc.pt",
    ]
    assert prune_checkpoints(tmp_path, keep=5) == []
    with pytest.raises(ValueError):
        prune_checkpoints(tmp_path, keep=0)
    with pytest.raises(ValueError):
        checkpoint_path(tmp_path, -1)
