"""VOCASET as downloaded from voca.is.tue.mpg.de, read in place (no conversion step).

::

    <root>/data_verts.npy        (N_frames, V, 3) every frame of every sequence, at stored_fps (60)
    <root>/subj_seq_to_idx.pkl   subject -> sentence -> frame number -> row of data_verts.npy
    <root>/raw_audio_fixed.pkl   subject -> sentence -> {"audio": int16 or float (N,), "sample_rate": 22000}
    <root>/templates.pkl         subject -> (V, 3)

The pickles are Python 2 pickles, read with the restricted unpickler. ``data_verts.npy`` (several GB) is
memory-mapped and never loaded whole: a sequence reads only its own rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE, resample_audio
from mmtalker.data.formats.common import as_frames, check_duration, open_npy
from mmtalker.data.manifest import Manifest
from mmtalker.data.safe_pickle import load_pickle
from mmtalker.data.sequence import Sequence
from mmtalker.errors import MMTalkerError

VERTS_FILE = "data_verts.npy"
INDEX_FILE = "subj_seq_to_idx.pkl"
AUDIO_FILE = "raw_audio_fixed.pkl"


def _memmap(path: str, num_vertices: int) -> np.ndarray:
    """``data_verts.npy`` as a read-only ``(N, V, 3)`` memory map, opened once per process and file version."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise MMTalkerError(path, "no such file", "the VOCASET folder needs data_verts.npy") from None
    return _open_memmap(path, stat.st_mtime_ns, stat.st_size, num_vertices)


@functools.lru_cache(maxsize=4)
def _open_memmap(path: str, mtime_ns: int, size: int, num_vertices: int) -> np.ndarray:
    return as_frames(open_npy(Path(path)), num_vertices, path)


@dataclass(frozen=True)
class VocasetRawSource:
    """One sequence of the raw release: its rows of ``data_verts.npy`` and its audio array."""

    verts_path: str
    num_vertices: int
    rows: np.ndarray = field(repr=False)  # (T,) int64 rows of data_verts.npy, in frame order
    samples: np.ndarray = field(repr=False)  # (N,) audio as stored (int16 or float)
    sample_rate: float
    what: str

    def audio(self) -> np.ndarray:
        return resample_audio(pcm_to_float(self.samples, self.what), self.sample_rate, SAMPLE_RATE)

    def vertices(self) -> np.ndarray:
        verts = _memmap(self.verts_path, self.num_vertices)
        first, count = int(self.rows[0]), len(self.rows)
        if np.array_equal(self.rows, np.arange(first, first + count)):
            return verts[first : first + count]  # a view: still memory-mapped
        return np.asarray(verts[self.rows])

    def alignment(self) -> Any | None:
        return None

    def oracle(self) -> np.ndarray | None:
        return None


def pcm_to_float(samples: np.ndarray, what: str) -> np.ndarray:
    """Stored audio as ``(N,)`` float32 in full-scale units: integers are divided by their type's full scale
    (int16 / 32768), floats are kept; ``(N, C)`` arrays are averaged over channels."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        x = samples.astype(np.float64) / (np.iinfo(samples.dtype).max + 1.0)
    elif np.issubdtype(samples.dtype, np.floating):
        x = samples.astype(np.float64)
    else:
        raise MMTalkerError(what, f"audio of type {samples.dtype} is neither integer PCM nor float")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or x.size == 0:
        raise MMTalkerError(what, f"expected a non-empty (N,) audio array, got shape {samples.shape}")
    if not np.isfinite(x).all():
        raise MMTalkerError(what, "audio has NaN or infinite samples")
    return x.astype(np.float32)


def scan(root: Path, manifest: Manifest, subjects: list[str] | None = None) -> list[Sequence]:
    """Every sequence listed in ``subj_seq_to_idx.pkl``, checked against the vertex file and the audio.

    ``subjects`` is unused (the index names subjects and sentences apart); it keeps the readers' signature.

    Raises:
        MMTalkerError: a missing or corrupt file, a vertex count that is not the manifest's, an index row past
        the end of ``data_verts.npy`` (truncated file), a sequence without audio, or audio and motion whose
        durations disagree by more than the manifest's tolerance.
    """
    verts_path = root / VERTS_FILE
    num_rows = _memmap(str(verts_path), manifest.num_vertices).shape[0]
    index = _nested_dict(load_pickle(root / INDEX_FILE), root / INDEX_FILE, depth=3)
    audio = _nested_dict(load_pickle(root / AUDIO_FILE), root / AUDIO_FILE, depth=2)
    sequences = []
    for subject in sorted(index):
        for sentence in sorted(index[subject]):
            what = f"{root / INDEX_FILE} [{subject}][{sentence}]"
            rows = _rows(index[subject][sentence], num_rows, what, verts_path)
            samples, rate = _audio_entry(audio, subject, sentence, root / AUDIO_FILE)
            check_duration(what, len(samples) / rate, len(rows) / manifest.stored_fps, manifest.duration_tolerance)
            source = VocasetRawSource(str(verts_path), manifest.num_vertices, rows, samples, rate, what)
            key = f"{subject}_{sentence}"
            sequences.append(Sequence(key, subject, sentence, manifest.fps, manifest.stored_fps, len(rows), source))
    return sequences


def _nested_dict(data: Any, path: Path, depth: int) -> dict:
    """Check that ``data`` is ``depth`` levels of dicts keyed by strings (the last level may be anything)."""
    def check(node: Any, level: int) -> None:
        if not isinstance(node, dict):
            raise MMTalkerError(path, f"unexpected content: expected nested dicts {depth} levels deep, found "
                                      f"{type(node).__name__} at level {level}")
        if level < depth - 1:
            for value in node.values():
                check(value, level + 1)

    check(data, 0)
    return data


def _rows(frames: dict, num_rows: int, what: str, verts_path: Path) -> np.ndarray:
    if not frames:
        raise MMTalkerError(what, "lists no frames")
    try:
        rows = np.array([int(frames[f]) for f in sorted(frames)], dtype=np.int64)
    except (TypeError, ValueError):
        raise MMTalkerError(what, "frame numbers and rows must be integers") from None
    if rows.min() < 0 or rows.max() >= num_rows:
        raise MMTalkerError(
            what,
            f"points at row {int(rows.max())} but {verts_path} has only {num_rows} rows",
            "data_verts.npy is truncated or does not belong to this index; download it again",
        )
    return rows


def _audio_entry(audio: dict, subject: str, sentence: str, path: Path) -> tuple[np.ndarray, float]:
    entry = audio.get(subject, {}).get(sentence)
    what = f"{path} [{subject}][{sentence}]"
    if entry is None:
        raise MMTalkerError(what, "missing: this sequence has motion but no audio")
    if not isinstance(entry, dict) or "audio" not in entry or "sample_rate" not in entry:
        raise MMTalkerError(what, "expected {'audio': array, 'sample_rate': rate}")
    rate = entry["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate <= 0:
        raise MMTalkerError(what, f"invalid sample_rate {rate!r}")
    samples = np.asarray(entry["audio"])
    if samples.size == 0:
        raise MMTalkerError(what, "audio holds no samples")
    return samples, float(rate)
