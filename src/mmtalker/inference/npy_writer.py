"""Write a (T, P, 3) float32 ``.npy`` file block by block, in order, without holding it in memory.

The header (with the final shape) goes first; blocks of frames are appended as they are finished, so
animating hours of speech needs memory for one window only (a memory map would keep written pages
resident). The file is written under a temporary name and moved into place by :meth:`NpyBlockWriter.close`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError


class NpyBlockWriter:
    """``NpyBlockWriter(path, shape)``; ``write(block)`` appends frames (n, *shape[1:]); ``close()`` checks
    that all ``shape[0]`` frames came and renames the file into place; ``abort()`` removes it."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...]):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{os.getpid()}.npy")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        if tuple(block.shape[1:]) != self.shape[1:] or self.frames + len(block) > self.shape[0]:
            raise ValueError(f"block {block.shape} does not fit {self.shape} after {self.frames} frames")
        self._file.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
        self.frames += len(block)

    def close(self) -> Path:
        self._file.close()
        if self.frames != self.shape[0]:
            self.abort()
            raise MMTalkerError(self.path, f"only {self.frames} of {self.shape[0]} frames were written")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.tmp.exists():
            self.tmp.unlink()
