"""A ``.npy`` file read through a memory map whose pages leave the resident set as soon as rows are gathered.

Reading one row of a mapped file makes the kernel map the pages around it too
("fault-around", 64 kB by default, whatever ``MADV_RANDOM`` says), so gathering 30,000
random rows of a 512 MB file maps nearly all of it into the process, where it counts in
the resident set until unmapped. :meth:`MappedArray.take` therefore gathers sorted row
ids in chunks and drops each chunk's pages (``madvise(MADV_DONTNEED)``) right after
copying them: the pages stay in the page cache (no disk read next time), and the
process holds at most one chunk's worth of the file.

Example:
    >>> import tempfile, numpy as np, torch
    >>> path = tempfile.mkdtemp() + "/a.npy"
    >>> np.save(path, np.arange(10) * 10)
    >>> rows = MappedArray(path)
    >>> rows.take(np.array([7, 2])).tolist(), rows[torch.tensor([[1], [9]])].tolist(), rows.numel()
    ([70, 20], [[10], [90]], 10)
"""

from __future__ import annotations

import mmap
import os
from typing import Final

import numpy as np
import torch
from torch import Tensor

__all__ = ["MappedArray"]

CHUNK_ROWS: Final = 1024
"""Rows gathered between two releases: at most about 1024 x 64 kB = 64 MB of a file is mapped at once."""

_FAULT_AROUND: Final = 1 << 16
"""Bytes the kernel may map on either side of a touched page (``fault_around_bytes``' default)."""


class MappedArray:
    """A read-only array over a memory map of a ``.npy`` file; gathers rows without keeping the pages mapped.

    ``self.array`` is the whole array (a view of the map: reading it maps pages that stay
    until :meth:`release`); :meth:`take` and indexing with a tensor gather rows and let
    their pages go.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        with open(path, "rb") as file:
            major, _ = np.lib.format.read_magic(file)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(file)
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            self._offset = file.tell()
        if hasattr(mmap, "MADV_RANDOM"):
            self._map.madvise(mmap.MADV_RANDOM)  # rows are read at random: no read-ahead
        flat = np.frombuffer(self._map, dtype=dtype, count=int(np.prod(shape)), offset=self._offset)
        self.array: np.ndarray = flat.reshape(shape, order="F" if fortran_order else "C")
        self._row_bytes = int(dtype.itemsize * np.prod(shape[1:])) if not fortran_order or len(shape) < 2 else 0

    def numel(self) -> int:
        return int(self.array.size)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """``self.array[rows]`` as a new array in RAM; the pages read are unmapped again."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=self.array.dtype)
        for start in range(0, len(rows), CHUNK_ROWS):
            part = ordered[start : start + CHUNK_ROWS]
            out[order[start : start + CHUNK_ROWS]] = self.array[part]
            self.release(int(part[0]), int(part[-1]) + 1)
        return out

    def __getitem__(self, index: Tensor) -> Tensor:
        """Rows at a tensor of indices, as a tensor of the same shape (what the neighbour sampler reads)."""
        rows = self.take(index.reshape(-1).numpy())
        return torch.from_numpy(rows).reshape(*index.shape, *self.array.shape[1:])

    def release(self, first_row: int = 0, stop_row: int | None = None) -> None:
        """Drop the pages of rows ``[first_row, stop_row)`` (and what fault-around mapped beside them) from RAM."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        size = len(self._map)
        if stop_row is None or self._row_bytes == 0:  # everything (or a Fortran-ordered array)
            start, stop = 0, size
        else:
            start = max(0, self._offset + first_row * self._row_bytes - _FAULT_AROUND)
            stop = min(size, self._offset + stop_row * self._row_bytes + _FAULT_AROUND)
        start -= start % mmap.PAGESIZE
        if stop > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)
