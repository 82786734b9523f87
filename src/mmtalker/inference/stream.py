"""Streaming: audio in small chunks (as from a microphone), animation frames out as soon as they are due.

Each :meth:`StreamingAnimator.push` appends a chunk to a rolling buffer and emits every frame whose
interval ends (``(t + ½) / fps``) at least ``lookahead_s`` before the newest sample (so a clip of duration d
gives round(d × fps) frames, as offline). Two contexts make the new frames:

- the speech encoder. A Whisper encoder (every shipped config's) runs incrementally
  (:class:`mmtalker.audio.whisper_stream.IncrementalWhisper`): each of its frames is computed once its keys and
  values are settled, attending to every earlier frame of a session of up to 20 s (a new session re-encodes
  the last ``context_s`` seconds). Other encoders re-encode the last ``encoder_context_s`` seconds of audio
  before the first new frame plus everything received since, with every push;
- the model's audio and fusion stages see the cached features of the last ``context_s`` seconds of emitted
  frames plus the new ones (its temporal layers and utterance-level pooling reach that far back); the
  per-frame stages after them run on the new frames only.

Only the new frames are decoded. Frames come out in order, exactly one per 1/fps of audio (``flush`` emits
the rest). Each frame's features are computed once, when the frame is emitted, from the audio up to then.

Latency of a frame = ``lookahead_s`` (waiting for future audio) + the time a push takes (computing), plus
up to one chunk's duration when audio arrives in chunks. ``benchmarks/bench_streaming.py`` measures them.

Shapes: ``P`` output points; chunks are (n,) float32 16 kHz mono.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import torch

from mmtalker.audio.encoders import features_at_fps
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.audio.whisper_stream import IncrementalWhisper, supports
from mmtalker.errors import MMTalkerError
from mmtalker.inference.windows import audio_array


ENCODER_MARGIN_S = 1.0
"""Seconds of the speech encoder's input kept free beside the re-encoded context and the lookahead."""


def encoder_room_s(engine) -> float | None:
    """The most seconds ``encoder_context_s + lookahead_s`` may add up to for ``engine``'s speech encoder (None:
    no limit)."""
    limit = engine.max_samples
    return None if limit is None else limit / SAMPLE_RATE - ENCODER_MARGIN_S


class StreamingAnimator:
    """Incremental animation of one face. Build it with ``mmtalker.MMTalker.stream(style=..., template=...)``.

    Args:
        engine: an :class:`mmtalker.inference.engine.Engine`.
        face: the prepared face (``MMTalker.prepare_face``).
        context_s: seconds of past speech features the model's audio and fusion stages see (cached).
        encoder_context_s: seconds of past audio the speech encoder re-encodes with each push (longer:
            features closer to offline ones, slower); not used by Whisper encoders, which run incrementally.
        lookahead_s: seconds of future audio a frame waits for (the model's local context reaches ahead).
        incremental: run a Whisper encoder incrementally (False: re-encode ``encoder_context_s`` with every
            push, as other encoders do; slower, and further from offline).
    """

    def __init__(self, engine, face, *, context_s: float = 2.0, encoder_context_s: float = 0.5, lookahead_s: float = 0.06,
                 incremental: bool = True):
        for name, value, least in (("context_s", context_s, None), ("encoder_context_s", encoder_context_s, 0.0),
                                   ("lookahead_s", lookahead_s, 0.0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise MMTalkerError("streaming", f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
            if not np.isfinite(value) or (value <= 0 if least is None else value < least):
                need = "positive" if least is None else "zero or more"
                raise MMTalkerError("streaming", f"{name} must be {need} seconds, got {value}")
        room = encoder_room_s(engine)
        if room is not None and encoder_context_s + lookahead_s > room:
            raise MMTalkerError("streaming", f"encoder_context_s {encoder_context_s:g} s + lookahead_s {lookahead_s:g} s + 1 s "
                                f"of margin is longer than the speech encoder takes ({room + ENCODER_MARGIN_S:.0f} s)")
        self.engine, self.face = engine, face
        self.fps = engine.fps
        self.context_frames = max(1, int(round(context_s * self.fps)))
        self.encoder_context_frames = int(round(encoder_context_s * self.fps))
        self.lookahead_s = float(lookahead_s)
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # sample index of _buffer[0]
        encoder = getattr(engine, "encoder", None)
        self._whisper = (IncrementalWhisper(encoder, restart_s=min(context_s, 8.0))
                         if incremental and encoder is not None and supports(encoder) else None)
        self._features = None  # (1, ≤ context_frames, C): features of the last emitted frames
        self.received = 0  # samples pushed so far
        self.emitted = 0  # frames emitted so far
        self.push_seconds: list[float] = []  # compute time of every push (for latency reports)
        # and of its stages: the speech encoder, the model's audio/fusion stages, decoding (0 where a push skipped one)
        self.stage_seconds: dict[str, list[float]] = {"encoder": [], "model": [], "decode": []}
        self._stages = dict.fromkeys(self.stage_seconds, 0.0)  # the current push's

    @property
    def faces(self) -> np.ndarray:
        return self.face.faces

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add a chunk (n,) of 16 kHz audio; returns the frames now due, (k, P, 3) (k may be 0)."""
        started = time.perf_counter()
        chunk = audio_array(chunk, "audio chunk")  # as MMTalker.animate takes arrays: 1-D float samples, finite
        self._stages = dict.fromkeys(self.stage_seconds, 0.0)
        if self._whisper is not None:
            self._whisper.push(chunk)
            self._stages["encoder"] = time.perf_counter() - started
        else:
            self._buffer = np.concatenate([self._buffer, chunk])
        self.received += len(chunk)
        due = math.floor((self.received / SAMPLE_RATE - self.lookahead_s) * self.fps - 0.5 + 1e-9) + 1
        frames = self._emit(max(0, due), pad=False)
        self.push_seconds.append(time.perf_counter() - started)
        for name, seconds in self._stages.items():
            self.stage_seconds[name].append(seconds)
        return frames

    def flush(self) -> np.ndarray:
        """End of audio: the remaining frames up to round(duration × fps) in all, (k, P, 3)."""
        total = max(1, int(round(self.received / SAMPLE_RATE * self.fps))) if self.received else 0
        return self._emit(total, pad=True)

    def _emit(self, upto: int, pad: bool) -> np.ndarray:
        if upto <= self.emitted:
            return np.zeros((0, self.face.num_points, 3), np.float32)
        t0 = time.perf_counter()
        new = self._new_features(upto, pad)
        if new is None:
            return np.zeros((0, self.face.num_points, 3), np.float32)
        t1 = time.perf_counter()
        feats = new if self._features is None else torch.cat([self._features, new], dim=1)
        part = self.engine.motion(self.face, feats, last=new.shape[1])  # (1, n, H): the cached frames are context only
        t2 = time.perf_counter()
        frames = self.engine.decode(self.face, part)
        self._stages["encoder"] += t1 - t0
        self._stages["model"] += t2 - t1
        self._stages["decode"] += time.perf_counter() - t2
        self._features = feats[:, -self.context_frames :]
        self.emitted = upto
        self._trim()
        return frames

    def _new_features(self, upto: int, pad: bool) -> torch.Tensor | None:
        """Speech features of frames [emitted, upto), (1, n, C), or None while there is too little audio."""
        if self._whisper is not None:
            return self._whisper_features(upto, pad)
        first = max(0, self.emitted - self.encoder_context_frames)  # first frame of the re-encoded stretch
        a = int(round(first * SAMPLE_RATE / self.fps)) - self._buffer_start
        segment = self._buffer[a:]
        if len(segment) < self.engine.min_samples:
            if not pad:
                return None
            segment = np.pad(segment, (0, self.engine.min_samples - len(segment)))
        return self.engine.features(segment, upto - first)[:, self.emitted - first :]  # (1, n, C)

    def _whisper_features(self, upto: int, pad: bool) -> torch.Tensor | None:
        """The incremental encoder's frames resampled to frames [emitted, upto) by ``features_at_fps``."""
        enc = self._whisper
        if enc.num_frames == 0:
            if not pad:
                return None
            enc.push(np.zeros(self.engine.min_samples - enc.received, np.float32))  # a stream shorter than one STFT window
        # the first encoder frame read: features_at_fps's own position of frame `emitted` (same float product), floored
        start = min(math.floor(self.emitted * (enc.rate / self.fps)), enc.num_frames - 1)
        return features_at_fps(enc.states(start, enc.num_frames)[None], enc.rate, self.fps, upto - self.emitted,
                               first_frame=self.emitted, offset=start)

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
