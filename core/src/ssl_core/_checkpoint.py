"""Crash-safe checkpoints and reproducible RNG state.

Layout of a checkpoint directory: one file per saved step, named ``step-000123.pt``
(see :func:`checkpoint_path`); the highest step is the latest. There is deliberately
no ``last.pt`` copy or symlink: :func:`latest_checkpoint` finds the newest file, and
:func:`prune_checkpoints` keeps the newest ``keep``.

Writes are atomic: the data goes to a hidden temporary file in the same directory
(``.step-000123.pt.<pid>.<random>.tmp``), is flushed and fsynced, then renamed over
the target with ``os.replace`` and the directory is fsynced. A reader therefore sees
either the old file or the complete new one. If the process is killed mid-write, the
hidden temporary file may remain; it is ignored by the functions here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "checkpoint_path",
    "latest_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_rng_state",
    "save_checkpoint",
]

_STEP_RE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, or disallowed content)."""


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` through ``write(file)`` on a temporary file, fsync, rename: never half-written.

    Parent directories are created. ``path`` is replaced only once the new data is
    complete and on disk; on any error the temporary file is removed and the previous
    ``path`` (if any) is left as it was.

    Example:
        >>> import tempfile
        >>> p = write_atomic(Path(tempfile.mkdtemp()) / "a.txt", lambda f: f.write(b"hi"))
        >>> p.read_bytes()
        b'hi'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # 0o666 & ~umask, like a normally created file (mkstemp would give 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)
    return target


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write ``state`` with ``torch.save`` to ``path`` and return it as a ``Path``.

    Parent directories are created. ``path`` is replaced only once the new data is
    complete and on disk (:func:`write_atomic`); on any error the previous ``path`` (if
    any) is left as it was.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> p = save_checkpoint(checkpoint_path(d, 7), {"step": 7})
        >>> p.name, load_checkpoint(p)["step"]
        ('step-000007.pt', 7)
    """
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    *,
    weights_only: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises ``FileNotFoundError`` naming the file when it is missing and
    :class:`CheckpointError` naming it when it is truncated, corrupt, not a dict, or holds
    objects refused by ``weights_only=True`` (pass ``weights_only=False`` only for
    trusted files).

    Example:
        >>> load_checkpoint("/nonexistent/step-000001.pt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: checkpoint file not found: /nonexistent/step-000001.pt
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        state = torch.load(p, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if weights_only and refused:
            raise CheckpointError(
                f"checkpoint {p} contains {refused.group(1)}, which weights_only=True refuses to load; "
                "pass weights_only=False if you trust this file"
            ) from err
        raise CheckpointError(f"checkpoint {p} is corrupt or truncated (unpickling failed)") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile/pickle errors, ...
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"checkpoint {p} is corrupt or truncated ({type(err).__name__}: {first_line})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p} holds a {type(state).__name__}, expected a dict")
    return state


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """The conventional file name for ``step`` in ``directory``: ``step-000123.pt``.

    Example:
        >>> checkpoint_path("runs/a", 123).name
        'step-000123.pt'
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(directory) / f"step-{step:06d}.pt"


def _step_files(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for entry in d.iterdir():
        m = _STEP_RE.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), entry))
    found.sort()
    return found


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The ``step-N.pt`` file with the highest ``N`` in ``directory``, or ``None`` (also if it is missing).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> latest_checkpoint(d) is None
        True
        >>> _ = save_checkpoint(checkpoint_path(d, 9), {}); _ = save_checkpoint(checkpoint_path(d, 10), {})
        >>> latest_checkpoint(d).name
        'step-000010.pt'
    """
    files = _step_files(directory)
    return files[-1][1] if files else None


def prune_checkpoints(directory: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the ``keep`` highest-step ``step-N.pt`` files; return the deleted paths.

    Other files in the directory are never touched.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> for s in (1, 2, 3):
        ...     _ = save_checkpoint(checkpoint_path(d, s), {})
        >>> [p.name for p in prune_checkpoints(d, keep=2)]
        ['step-000001.pt']
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    files = _step_files(directory)
    removed = []
    for _, p in files[: max(0, len(files) - keep)]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        removed.append(p)
    return removed


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot the RNGs of ``random``, NumPy's global state, torch CPU, every CUDA device, and ``generator``.

    The result contains only tensors, tuples, ints, floats, strings and ``None``, so it
    can be saved in a checkpoint and loaded back with ``weights_only=True``.

    Example:
        >>> state = capture_rng_state()
        >>> a = torch.rand(3)
        >>> restore_rng_state(state)
        >>> torch.equal(a, torch.rand(3))
        True
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore a snapshot from :func:`capture_rng_state`.

    CUDA states are restored for the devices present in both the snapshot and this
    process. ``generator`` receives the saved generator state if the snapshot has one.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> snap = capture_rng_state(g)
        >>> x = torch.rand(2, generator=g)
        >>> restore_rng_state(snap, g)
        >>> torch.equal(x, torch.rand(2, generator=g))
        True
    """
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        keys_np = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state((name, keys_np.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())
