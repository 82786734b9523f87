"""The processed layout of FaceFormer/CodeTalker, and our own ``native`` format built on it.

::

    <root>/vertices_npy/<subject>_<sentence>.npy   motion, (T, V*3) or (T, V, 3), at stored_fps
    <root>/wav/<subject>_<sentence>.wav            speech, any rate
    <root>/templates.pkl | templates.npz           subject -> (V, 3) neutral face
    native only:
    <root>/manifest.json                           see mmtalker.data.manifest
    <root>/alignments/<key>.json                   phone timings (optional)
    <root>/oracle_npy/<key>.npy                    oracle motion (optional)
    <root>/regions/<name>.txt, topology mesh       named in the manifest

Every ``.npy`` in ``vertices_npy/`` is a sequence and needs its wav. A wav without motion is an error in our own
format (the writer writes both, so one is missing); in the processed layout it is skipped with a note on stderr
(BIWI ships some). Only headers are read when the dataset is opened.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtalker.audio.io import audio_info, load_audio, wav_share_present
from mmtalker.data.formats.common import as_frames, check_duration, open_npy, split_key
from mmtalker.data.manifest import Manifest
from mmtalker.data.sequence import Sequence
from mmtalker.errors import MMTalkerError

VERTICES_DIR = "vertices_npy"
WAV_DIR = "wav"
ALIGNMENTS_DIR = "alignments"
ORACLE_DIR = "oracle_npy"


@dataclass(frozen=True)
class NpyWavSource:
    """Reads one sequence of the processed layout (picklable: paths only, files reopened on use)."""

    npy_path: Path
    wav_path: Path
    num_vertices: int
    alignment_path: Path | None = None
    oracle_path: Path | None = None

    @property
    def what(self) -> str:
        return str(self.npy_path)

    def audio(self) -> np.ndarray:
        return load_audio(self.wav_path)

    def vertices(self) -> np.ndarray:
        return as_frames(open_npy(self.npy_path), self.num_vertices, str(self.npy_path))

    def alignment(self) -> Any | None:
        if self.alignment_path is None:
            return None
        try:
            return json.loads(self.alignment_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MMTalkerError(self.alignment_path, f"unreadable alignment ({exc})") from None

    def oracle(self) -> np.ndarray | None:
        if self.oracle_path is None:
            return None
        return as_frames(open_npy(self.oracle_path), self.num_vertices, str(self.oracle_path))


def scan(root: Path, manifest: Manifest, subjects: list[str]) -> list[Sequence]:
    """Find every sequence under ``root`` and check its files' headers.

    Args:
        root: the dataset folder.
        manifest: its manifest (fps, vertex count, duration tolerance).
        subjects: known subject names (manifest and templates), used to split file names.

    Raises:
        MMTalkerError: no ``vertices_npy/`` folder, a motion file without its wav (or, in the ``native`` layout, a
        wav without its motion file), a corrupt or truncated ``.npy``, a vertex count that is not the manifest's,
        or audio and motion of different lengths.
    """
    vertex_dir = root / VERTICES_DIR
    if not vertex_dir.is_dir():
        raise MMTalkerError(root, f"has no {VERTICES_DIR}/ folder", "is this the right dataset folder?")
    sequences = [_sequence(root, npy, manifest, subjects) for npy in sorted(vertex_dir.glob("*.npy"))]
    _audio_without_motion(root, manifest, {s.key for s in sequences})
    _truncated_audio(root, sequences)
    return sequences


def _truncated_audio(root: Path, sequences: list[Sequence]) -> None:
    """One warning for the wav files that hold less audio than their headers promise (copied incompletely): their
    sequences are read as far as they go, the rest of their motion scored against silence."""
    cut = []
    for seq in sequences:
        wav = root / WAV_DIR / f"{seq.key}.wav"
        share = wav_share_present(wav)
        if share is not None and share < 0.999:
            cut.append((wav, share))
    if cut:
        wav, share = cut[0]
        held = audio_info(wav).duration
        warnings.warn(f"{root / WAV_DIR}: {len(cut)} wav file(s) hold less audio than their headers promise (e.g. "
                      f"{wav.name}: {held:.2f} of {held / max(share, 1e-9):.2f} s): copied incompletely? Copy them again",
                      stacklevel=4)


def _audio_without_motion(root: Path, manifest: Manifest, keys: set[str]) -> None:
    """Wav files whose motion file is missing: an error naming it in our own format (``native``: the writer writes
    both), else a one-line note on stderr that they are skipped (BIWI's processed release ships some)."""
    wav_dir = root / WAV_DIR
    orphans = sorted(p for p in wav_dir.glob("*.wav") if p.stem not in keys) if wav_dir.is_dir() else []
    if not orphans:
        return
    first = orphans[0]
    if manifest.layout == "native":
        more = f" (and {len(orphans) - 1} more wav files without motion)" if len(orphans) > 1 else ""
        raise MMTalkerError(first, f"has no motion: {root / VERTICES_DIR / (first.stem + '.npy')} is missing{more}",
                            "every sequence needs its motion file of the same name; copy it again, or remove the wav")
    print(f"mmtalker: note: {wav_dir}: {len(orphans)} wav file(s) without motion in {VERTICES_DIR}/ skipped "
          f"(e.g. {first.name})", file=sys.stderr)


def _sequence(root: Path, npy: Path, manifest: Manifest, subjects: list[str]) -> Sequence:
    key = npy.stem
    subject, sentence = split_key(key, subjects, str(npy))
    wav = root / WAV_DIR / f"{key}.wav"
    if not wav.is_file():
        raise MMTalkerError(npy, f"has no audio: {wav} is missing", "every motion file needs the wav of the same name")
    frames = as_frames(open_npy(npy), manifest.num_vertices, str(npy)).shape[0]
    check_duration(str(npy), audio_info(wav).duration, frames / manifest.stored_fps, manifest.duration_tolerance)
    alignment = root / ALIGNMENTS_DIR / f"{key}.json"
    oracle = root / ORACLE_DIR / f"{key}.npy"
    if oracle.is_file():
        as_frames(open_npy(oracle), manifest.num_vertices, str(oracle))
    source = NpyWavSource(
        npy_path=npy,
        wav_path=wav,
        num_vertices=manifest.num_vertices,
        alignment_path=alignment if alignment.is_file() else None,
        oracle_path=oracle if oracle.is_file() else None,
    )
    return Sequence(key, subject, sentence, manifest.fps, manifest.stored_fps, frames, source)
