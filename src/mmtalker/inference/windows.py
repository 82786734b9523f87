"""Windowed inference for audio of any length: overlapping windows, raised-cosine crossfade, bounded memory.

The speech encoder takes at most 30 s per call (Whisper), and a whole hour of (T, V, 3) frames need not
fit in memory. So the frames 0..T-1 are cut into windows of ``W`` frames that overlap by ``O`` frames
(window k starts at ``k·(W−O)``; the last one ends at T and may be shorter, but always holds more than
``O`` frames). Each window is animated on its own stretch of audio; over an overlap the outgoing window
fades out and the incoming one fades in with raised-cosine weights that sum to 1 frame by frame.

:func:`iter_windowed` yields finished frames window by window (only the O overlap frames are held back
between windows), so output can go straight to a file; :func:`run_windowed` collects them into an array
(or a ``np.memmap``). Shapes: ``T`` frames, ``P`` output points (vertices), ``N`` audio samples.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError

DEFAULT_WINDOW_S = 20.0  # well under Whisper's 30 s, long enough for the utterance-level context
DEFAULT_OVERLAP_S = 3.0  # far more than the model's local receptive field (about ±0.5 s at 30 fps)


def real_number(value, what: str) -> float:
    """``value`` as a finite float; MMTalkerError naming ``what`` for a string, bool, None, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MMTalkerError(what, f"must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise MMTalkerError(what, f"must be a finite number, got {value}")
    return value


def audio_array(audio, what: str = "audio array") -> np.ndarray:
    """``audio`` as (N,) float32 samples: a 1-D float numpy array, torch tensor or sequence of floats.

    Anything else (integer PCM, several channels, bytes, a string, NaN samples) raises MMTalkerError naming ``what``.
    """
    if isinstance(audio, (str, bytes, bytearray, memoryview)):
        raise MMTalkerError(what, f"must be a 1-D float array of samples, got {type(audio).__name__}")
    if type(audio).__module__.startswith("torch") and hasattr(audio, "detach"):  # a torch tensor, even one needing grad
        audio = audio.detach().cpu()
        audio = (audio.float() if audio.is_floating_point() else audio).numpy()
    try:
        samples = np.asarray(audio)
    except (TypeError, ValueError) as exc:
        raise MMTalkerError(what, f"must be a 1-D float array of samples ({exc})") from None
    if samples.ndim != 1 or samples.dtype.kind != "f":
        hint = ("scale integer PCM to floats in [-1, 1] first, e.g. x / 32768" if samples.dtype.kind in "iu" else
                "pass one channel (or the channels' mean)" if samples.ndim == 2 and samples.dtype.kind == "f" else None)
        raise MMTalkerError(what, f"must be a 1-D float array of samples, got {samples.dtype} {samples.shape}", hint)
    if not np.isfinite(samples).all():
        raise MMTalkerError(what, "contains NaN or infinite samples")
    return samples.astype(np.float32, copy=False)


FramesFn = Callable[[np.ndarray, int], np.ndarray]
"""frames_fn(audio (n,) float32 16 kHz starting at the window's first frame, num_frames) -> (num_frames, P, 3)."""


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of the output; the audio for them starts at frame ``start``'s time."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int) -> list[Window]:
    """Windows covering frames [0, num_frames): each overlaps the next by exactly ``overlap_frames``.

    Requires ``0 <= overlap_frames < window_frames / 2`` so that no frame is in more than two windows.
    """
    if num_frames < 1:
        raise MMTalkerError("audio", "gives no frames to animate", "the audio is too short")
    if window_frames < 1 or not 0 <= 2 * overlap_frames < window_frames:
        raise MMTalkerError("windows", f"overlap {overlap_frames} frames must be under half the window ({window_frames} frames)")
    stride = window_frames - overlap_frames
    windows, start = [], 0
    while True:
        end = min(start + window_frames, num_frames)
        windows.append(Window(start, end))
        if end == num_frames:
            return windows
        start += stride


def fade_in(length: int) -> np.ndarray:
    """Raised-cosine weights (length,) rising from near 0 to near 1; ``1 − fade_in`` is its mirror image.

    w_i = ½ − ½·cos(π (i + ½) / length): symmetric about the middle, so an outgoing window weighted
    ``1 − w`` and an incoming one weighted ``w`` sum to exactly 1 on every frame.
    """
    i = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / length)).astype(np.float32)


def window_weights(windows: list[Window], overlap_frames: int) -> list[np.ndarray]:
    """The weight of every frame of every window (list of (length,) arrays), as :func:`iter_windowed` applies them."""
    ramp = fade_in(overlap_frames) if overlap_frames else np.zeros(0, np.float32)
    out = []
    for k, win in enumerate(windows):
        w = np.ones(win.length, np.float32)
        if k > 0 and overlap_frames:
            w[:overlap_frames] = ramp
        if k + 1 < len(windows) and overlap_frames:
            w[-overlap_frames:] *= 1.0 - ramp
        out.append(w)
    return out


def window_audio(audio: np.ndarray, win: Window, fps: float, min_samples: int = 0) -> np.ndarray:
    """The audio (n,) for the frames of ``win``: from frame ``start``'s time to frame ``end``'s, zero-padded
    past the end of ``audio`` and up to ``min_samples``."""
    a = int(round(win.start * SAMPLE_RATE / fps))
    b = max(int(round(win.end * SAMPLE_RATE / fps)), a + min_samples)
    seg = audio[a:b]
    if len(seg) < b - a:
        seg = np.concatenate([seg, np.zeros(b - a - len(seg), dtype=np.float32)])
    return np.ascontiguousarray(seg, dtype=np.float32)


def frames_for_window(window_s: float, overlap_s: float, fps: float) -> tuple[int, int]:
    """Window and overlap lengths in frames for lengths in seconds; the overlap, in frames, under half the window
    (:func:`plan_windows` needs it so: no frame in more than two windows)."""
    window_s, overlap_s = real_number(window_s, "window_s"), real_number(overlap_s, "overlap_s")
    if window_s <= 0:
        raise MMTalkerError("window_s", f"must be positive seconds, got {window_s:g}")
    if overlap_s < 0:
        raise MMTalkerError("overlap_s", f"must be zero or more seconds, got {overlap_s:g}")
    W, O = max(1, int(math.floor(window_s * fps))), int(round(overlap_s * fps))
    if not 2 * O < W:
        raise MMTalkerError("overlap_s", f"{overlap_s:g} s is {O} frames at {fps:g} fps: it must be under half the window "
                            f"({window_s:g} s, {W} frames)", "use a shorter overlap or a longer window")
    return W, O


def iter_windowed(
    audio: np.ndarray, fps: float, num_frames: int, frames_fn: FramesFn, *,
    window_s: float = DEFAULT_WINDOW_S, overlap_s: float = DEFAULT_OVERLAP_S, min_samples: int = 0, on_window: Callable[[], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Animate ``num_frames`` frames of ``audio`` (N,) 16 kHz window by window.

    Yields ``(start, frames)`` blocks in order: frames (n, P, 3) are final output frames start..start+n−1.
    Only one window's prediction and the O pending overlap frames are held at a time.
    ``on_window`` is called after each window (for progress bars).
    """
    W, O = frames_for_window(window_s, overlap_s, fps)
    windows = plan_windows(num_frames, W, O)
    ramp = fade_in(O)[:, None, None] if O else None
    pending = None  # (O, P, 3): the previous window's last O frames, not yet final
    for k, win in enumerate(windows):
        pred = np.asarray(frames_fn(window_audio(audio, win, fps, min_samples), win.length), dtype=np.float32)
        if pred.shape[0] != win.length:
            raise RuntimeError(f"frames_fn returned {pred.shape[0]} frames for a window of {win.length}")
        if pending is not None:
            pred[:O] = pending * (1.0 - ramp) + pred[:O] * ramp
        last = k + 1 == len(windows)
        keep = win.length if last or not O else win.length - O
        pending = None if last or not O else pred[keep:].copy()
        if on_window is not None:
            on_window()
        yield win.start, pred[:keep]


def run_windowed(audio: np.ndarray, fps: float, num_frames: int, frames_fn: FramesFn, *, out: np.ndarray | None = None,
                 **kw) -> np.ndarray:
    """:func:`iter_windowed` collected into ``out`` (num_frames, P, 3) (allocated on the first window when None;
    pass a ``np.lib.format.open_memmap`` array for output larger than memory). Returns ``out``."""
    for start, block in iter_windowed(audio, fps, num_frames, frames_fn, **kw):
        if out is None:
            out = np.empty((num_frames, *block.shape[1:]), np.float32)
        out[start : start + len(block)] = block
    return out
