"""Frame-rate conversion of motion: the one place mmtalker changes how many frames a second a sequence has.

A dataset stores motion at its capture rate (``stored_fps``, e.g. 60 for VOCASET) and serves it at the rate
the models work at (``fps``, e.g. 30). The conversion is linear interpolation on the time axis, so 60 -> 30
keeps every other frame exactly and any other ratio blends the two nearest frames; it is never a hidden
``[::2]`` that would silently be wrong for 25 or 50 fps data.
"""

from __future__ import annotations

import math

import numpy as np


def num_frames(length: int, src_fps: float, dst_fps: float) -> int:
    """Frames of a ``length``-frame sequence at ``src_fps`` once converted to ``dst_fps``.

    ``round(length * dst_fps / src_fps)`` with halves rounded up, and at least one frame when ``length >= 1``
    (the first frame is always kept). Zero frames stay zero.
    """
    _check_rates(src_fps, dst_fps)
    if length <= 0:
        return 0
    if src_fps == dst_fps:
        return int(length)
    return max(1, int(math.floor(length * dst_fps / src_fps + 0.5)))


def resample_frames(x: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Convert a sequence of frames from ``src_fps`` to ``dst_fps`` by linear interpolation on time.

    Output frame ``k`` is the input at time ``k / dst_fps`` seconds, i.e. at fractional source index
    ``k * src_fps / dst_fps``, blended linearly between the two nearest source frames; times past the last
    source frame hold the last frame. Frame 0 is kept unchanged.

    Args:
        x: array of shape ``(T, ...)``: ``T`` frames of any per-frame shape (e.g. ``(T, V, 3)`` vertices in
            metres). A memory-mapped array is read only at the frames needed.
        src_fps: frames per second of ``x`` (> 0).
        dst_fps: wanted frames per second (> 0).

    Returns:
        ``(T', ...)`` with ``T' = num_frames(T, src_fps, dst_fps)``, in ``x``'s float dtype (float64 for
        integer input). When the rates are equal, ``x`` itself is returned (no copy).
    """
    _check_rates(src_fps, dst_fps)
    if src_fps == dst_fps:
        return x
    length = x.shape[0]
    out_len = num_frames(length, src_fps, dst_fps)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    if out_len == 0:
        return np.zeros((0,) + tuple(x.shape[1:]), dtype=dtype)
    pos = np.arange(out_len, dtype=np.float64) * (src_fps / dst_fps)
    i0 = np.minimum(np.floor(pos).astype(np.int64), length - 1)
    i1 = np.minimum(i0 + 1, length - 1)
    w = np.clip(pos - i0, 0.0, 1.0).astype(dtype)
    w = w.reshape((out_len,) + (1,) * (x.ndim - 1))
    a = np.asarray(x[i0], dtype=dtype)
    if not w.any():  # whole-ratio downsampling (60 -> 30): no second read of the (possibly memory-mapped) input
        return a
    b = np.asarray(x[i1], dtype=dtype)
    # a * (1 - w) + b * w is exactly a where w == 0, so whole-ratio downsampling copies frames bit for bit.
    return a * (1 - w) + b * w


def _check_rates(src_fps: float, dst_fps: float) -> None:
    if not (src_fps > 0 and dst_fps > 0) or not (math.isfinite(src_fps) and math.isfinite(dst_fps)):
        raise ValueError(f"frame rates must be positive and finite, got {src_fps} -> {dst_fps}")
