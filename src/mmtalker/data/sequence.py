"""One recorded sentence: a subject speaking, with its audio and its face motion, read lazily.

A :class:`Sequence` is cheap: it holds names and sizes, and reads its arrays only when asked. Its data comes
from a *source* (one per dataset layout, in :mod:`mmtalker.data.formats`) that returns motion at the stored
frame rate; the sequence converts it to the dataset's served rate with :func:`mmtalker.data.fps.resample_frames`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mmtalker.data import fps as fps_mod
from mmtalker.errors import MMTalkerError

_TRAILING_DIGITS = re.compile(r"(\d+)$")


class SequenceSource(Protocol):
    """Where a sequence's arrays come from (implemented by each dataset layout)."""

    what: str  # the file(s) named in errors

    def audio(self) -> np.ndarray:
        """``(N,)`` float32 at :data:`mmtalker.audio.io.SAMPLE_RATE`."""

    def vertices(self) -> np.ndarray:
        """``(T, V, 3)`` at the stored frame rate; memory-mapped where the layout allows."""

    def alignment(self) -> Any | None:
        """Phone timings (parsed JSON) or ``None``."""

    def oracle(self) -> np.ndarray | None:
        """``(T, V, 3)`` oracle motion at the stored frame rate, or ``None``."""


def sentence_number(sentence: str) -> int | None:
    """The trailing digits of a sentence id as an int (``"sentence07"`` -> 7, ``"e37"`` -> 37), else None."""
    match = _TRAILING_DIGITS.search(sentence)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, eq=False)
class Sequence:
    """A sentence spoken by a subject.

    Attributes:
        key: unique name in its dataset, ``"<subject>_<sentence>"``.
        subject: speaker name (a key of the dataset's templates).
        sentence: sentence id as stored (``"sentence01"``, ``"e01"``, ``"01"``).
        fps: frames per second of :meth:`vertices` (the dataset's served rate).
        stored_fps: frames per second of the motion on disk.
        stored_frames: number of frames on disk.
    """

    key: str
    subject: str
    sentence: str
    fps: float
    stored_fps: float
    stored_frames: int
    _source: SequenceSource = field(repr=False)

    @property
    def sentence_number(self) -> int | None:
        """Trailing digits of :attr:`sentence` (what split files select on)."""
        return sentence_number(self.sentence)

    @property
    def num_frames(self) -> int:
        """``T``: frames of :meth:`vertices` at :attr:`fps`."""
        return fps_mod.num_frames(self.stored_frames, self.stored_fps, self.fps)

    @property
    def duration(self) -> float:
        """Seconds of motion."""
        return self.stored_frames / self.stored_fps

    @property
    def what(self) -> str:
        """The file(s) its data comes from, as errors name them."""
        return self._source.what

    def audio(self) -> np.ndarray:
        """``(N,)`` float32 waveform at 16 kHz, full scale ±1."""
        return self._source.audio()

    def first_frame(self) -> np.ndarray:
        """``(V, 3)`` float32 the first stored frame (read alone where the file is memory-mapped)."""
        frame = np.asarray(self._source.vertices()[0], dtype=np.float32)
        _check_finite(frame, self._source.what)
        return frame

    def vertices(self, frames: slice | None = None) -> np.ndarray:
        """``(T, V, 3)`` float32 vertex positions at :attr:`fps`, in the dataset's length unit; with ``frames`` (a
        slice of those T) only them.

        Memory-mapped (read on access) when the file is float32 ``.npy`` stored at :attr:`fps`; otherwise a
        new array converted with :func:`mmtalker.data.fps.resample_frames`. Stored at :attr:`fps`, a slice reads
        its frames alone (a training window from a clip that is not preloaded).
        """
        verts = self._source.vertices()
        if frames is not None and self.stored_fps == self.fps:
            part = verts[frames]
            _check_finite(part, self._source.what)
            return _as_float32(part)
        _check_finite(verts, self._source.what)
        whole = _as_float32(fps_mod.resample_frames(verts, self.stored_fps, self.fps))
        return whole if frames is None else whole[frames]

    def alignment(self) -> Any | None:
        """Phone timings (``[{"symbol", "start", "end", ...}]``, seconds) when the dataset has them, else None."""
        return self._source.alignment()

    def oracle(self) -> np.ndarray | None:
        """``(T', V, 3)`` float32 oracle motion at :attr:`fps` when the dataset has it, else None."""
        verts = self._source.oracle()
        if verts is None:
            return None
        _check_finite(verts, self._source.what + " (oracle)")
        return _as_float32(fps_mod.resample_frames(verts, self.stored_fps, self.fps))


def _as_float32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _check_finite(x: np.ndarray, what: str) -> None:
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise MMTalkerError(what, f"{bad} vertex coordinates are NaN or infinite", "the file is damaged; export it again")
