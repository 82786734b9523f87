"""Training clips made of two clips of one subject played back to back (``data.join_share``).

A dataset's clips hold one sentence each between silences, so every pause a model trains on sits at a
clip's edge, where the speech encoder's positions mark it. Users animate minutes of speech, where the pauses
fall mid-clip and one sentence runs into the next (docs/results.md, "Long speech"). A joined clip is two
real recordings of one speaker, the second starting where the first's motion ends: the audio of each part is
cut or padded with silence to its motion's length, so sound and motion stay aligned across the seam, and the
speech encoder hears both as one clip.
"""

from __future__ import annotations

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE


class JoinedSequence:
    """Sequences of one subject at one frame rate, played one after the other (what training reads of a
    :class:`~mmtalker.data.sequence.Sequence`: key, subject, fps, num_frames, audio(), vertices())."""

    def __init__(self, parts: list):
        if len(parts) < 2:
            raise ValueError("a joined clip needs at least two sequences")
        if len({p.subject for p in parts}) != 1 or len({float(p.fps) for p in parts}) != 1:
            raise ValueError(f"joined sequences must share subject and fps: {[p.key for p in parts]}")
        self.parts = list(parts)
        self.key = "+".join(p.key for p in parts)
        self.subject = parts[0].subject
        self.fps = float(parts[0].fps)

    @property
    def num_frames(self) -> int:
        return sum(p.num_frames for p in self.parts)

    def audio(self) -> np.ndarray:
        """Each part's audio cut or zero-padded to its motion's length, concatenated: (N,) float32 16 kHz."""
        out, frames = [], 0
        for p in self.parts:
            # the part's samples span [frames, frames + T) of the joined motion, rounded once on the whole clip
            start = int(round(frames * SAMPLE_RATE / self.fps))
            frames += p.num_frames
            n = int(round(frames * SAMPLE_RATE / self.fps)) - start
            a = np.asarray(p.audio(), np.float32)[:n]
            out.append(np.pad(a, (0, n - len(a))))
        return np.concatenate(out)

    def vertices(self, frames: slice | None = None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p.vertices(), np.float32) for p in self.parts])
        return whole if frames is None else whole[frames]


def join_sequences(sequences: list, share: float, rng: np.random.Generator) -> list[JoinedSequence]:
    """``round(share × len(sequences))`` joined clips, each two different sequences of one subject drawn
    with ``rng``; subjects with a single sequence take no part."""
    by_subject: dict[str, list] = {}
    for s in sequences:
        by_subject.setdefault(s.subject, []).append(s)
    pool = [s for s in sequences if len(by_subject[s.subject]) > 1]
    count = int(round(share * len(sequences)))
    if count <= 0 or not pool:
        return []
    out = []
    for _ in range(count):
        first = pool[int(rng.integers(len(pool)))]
        mates = [s for s in by_subject[first.subject] if s is not first]
        out.append(JoinedSequence([first, mates[int(rng.integers(len(mates)))]]))
    return out


def training_sequences(sequences: list, join_share: float, seed: int) -> list:
    """A training split's sequences plus its joined clips (``data.join_share``), drawn from ``seed``."""
    return list(sequences) + join_sequences(sequences, join_share, np.random.default_rng([int(seed), 0x101]))
