"""Streaming: audio in small chunks (as from a microphone), animation frames out as soon as they are due.

Each :meth:`StreamingAnimator.push` appends a chunk to a rolling buffer and emits every frame whose
interval ends (``(t + ½) / fps``) at least ``lookahead_s`` before the newest sample (so a clip of duration d
gives round(d × fps) frames, as offline). Two contexts make the new frames:

- the speech encoder re-encodes only the last ``encoder_context_s`` seconds of audio before the first new
  frame plus everything received since, and keeps the features of the new frames;
- the model's audio and fusion stages see the cached features of the last ``context_s`` seconds of emitted
  frames plus the new ones (its temporal layers and utterance-level pooling reach that far back).

Only the new frames are decoded. Frames come out in order, exactly one per 1/fps of audio (``flush`` emits
the rest). The encoder's share is what a push costs, so a short ``encoder_context_s`` makes streaming cheap;
each frame's features are computed once, when the frame is emitted, from the audio up to then.

Latency of a frame = ``lookahead_s`` (waiting for future audio) + the time a push takes (computing), plus
up to one chunk's duration when audio arrives in chunks. ``benchmarks/bench_streaming.py`` measures them.

Shapes: ``P`` output points; chunks are (n,) float32 16 kHz mono.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError


class StreamingAnimator:
    """Incremental animation of one face. Build it with ``mmtalker.MMTalker.stream(style=..., template=...)``.

    Args:
        engine: an :class:`mmtalker.inference.engine.Engine`.
        face: the prepared face (``MMTalker.prepare_face``).
        context_s: seconds of past speech features the model's audio and fusion stages see (cached).
        encoder_context_s: seconds of past audio the speech encoder re-encodes with each push (longer:
            features closer to offline ones, slower).
        lookahead_s: seconds of future audio a frame waits for (the model's local context reaches ahead).
    """

    def __init__(self, engine, face, *, context_s: float = 2.0, encoder_context_s: float = 0.5, lookahead_s: float = 0.06):
        for name, value, least in (("context_s", context_s, None), ("encoder_context_s", encoder_context_s, 0.0),
                                   ("lookahead_s", lookahead_s, 0.0)):
            if not np.isfinite(value) or (value <= 0 if least is None else value < least):
                need = "positive" if least is None else "zero or more"
                raise MMTalkerError("streaming", f"{name} must be {need} seconds, got {value}")
        limit = engine.max_samples
        if limit is not None and (encoder_context_s + lookahead_s + 1.0) * SAMPLE_RATE > limit:
            raise MMTalkerError("encoder_context_s", f"{encoder_context_s} s is too long for the speech encoder ({limit / SAMPLE_RATE:.0f} s)")
        self.engine, self.face = engine, face
        self.fps = engine.fps
        self.context_frames = max(1, int(round(context_s * self.fps)))
        self.encoder_context_frames = int(round(encoder_context_s * self.fps))
        self.lookahead_s = float(lookahead_s)
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # sample index of _buffer[0]
        self._features = None  # (1, ≤ context_frames, C): features of the last emitted frames
        self.received = 0  # samples pushed so far
        self.emitted = 0  # frames emitted so far
        self.push_seconds: list[float] = []  # compute time of every push (for latency reports)

    @property
    def faces(self) -> np.ndarray:
        return self.face.faces

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add a chunk (n,) of 16 kHz audio; returns the frames now due, (k, P, 3) (k may be 0)."""
        started = time.perf_counter()
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.isfinite(chunk).all():
            raise MMTalkerError("audio chunk", "contains NaN or infinite samples")
        self._buffer = np.concatenate([self._buffer, chunk])
        self.received += len(chunk)
        due = math.floor((self.received / SAMPLE_RATE - self.lookahead_s) * self.fps - 0.5 + 1e-9) + 1
        frames = self._emit(max(0, due), pad=False)
        self.push_seconds.append(time.perf_counter() - started)
        return frames

    def flush(self) -> np.ndarray:
        """End of audio: the remaining frames up to round(duration × fps) in all, (k, P, 3)."""
        total = max(1, int(round(self.received / SAMPLE_RATE * self.fps))) if self.received else 0
        return self._emit(total, pad=True)

    def _emit(self, upto: int, pad: bool) -> np.ndarray:
        if upto <= self.emitted:
            return np.zeros((0, self.face.num_points, 3), np.float32)
        first = max(0, self.emitted - self.encoder_context_frames)  # first frame of the re-encoded stretch
        a = int(round(first * SAMPLE_RATE / self.fps)) - self._buffer_start
        segment = self._buffer[a:]
        if len(segment) < self.engine.min_samples:
            if not pad:
                return np.zeros((0, self.face.num_points, 3), np.float32)
            segment = np.pad(segment, (0, self.engine.min_samples - len(segment)))
        new = self.engine.features(segment, upto - first)[:, self.emitted - first :]  # (1, n, C)
        feats = new if self._features is None else torch.cat([self._features, new], dim=1)
        part = self.engine.motion(self.face, feats)  # (1, cached + n, H)
        frames = self.engine.decode(self.face, part[:, -new.shape[1] :])
        self._features = feats[:, -self.context_frames :]
        self.emitted = upto
        self._trim()
        return frames

    def _trim(self) -> None:
        """Drop audio no later push will re-encode."""
        keep_from = int(round(max(0, self.emitted - self.encoder_context_frames) * SAMPLE_RATE / self.fps)) - 1
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop


def stream_array(animator: StreamingAnimator, audio: np.ndarray, chunk_s: float = 0.16) -> np.ndarray:
    """Feed ``audio`` (N,) through ``animator`` in chunks of ``chunk_s`` seconds; all frames (T, P, 3)."""
    step = max(1, int(round(chunk_s * SAMPLE_RATE)))
    blocks = [animator.push(audio[s : s + step]) for s in range(0, len(audio), step)]
    blocks.append(animator.flush())
    return np.concatenate(blocks)
