"""Blinks and brows: the upper face's part of the synthetic motion.

Blinks come from two sources. At each pause (a ``"_"`` phone of at least :data:`MIN_PAUSE` seconds,
which is where phrase boundaries fall in synthesised speech) the subject blinks with probability
``style.pause_blink_prob``, starting at a uniformly random moment in the first :data:`PAUSE_WINDOW`
seconds of the pause. On top of that, random blinks arrive as a Poisson process of rate
``style.blink_rate`` per second anywhere in the clip. Blinks closer than :data:`REFRACTORY` seconds to
an earlier one are dropped. Both eyes blink together.

The *oracle* (the expected motion given the audio) holds the expected pause blinks: the blink
shape averaged over its random start and weighted by its probability, so a pause shows a partial
lid closure. Random blinks carry no information from the audio and are left out of the oracle.

Brows rise on primary-stressed vowels: a raised-cosine bump centred on the vowel, of height
``style.brow_amplitude`` on the phrase's nucleus (its last primary stress before a pause) and
:data:`MINOR_ACCENT` of that on its other stressed vowels (overlapping bumps combine by their maximum).
That is predictable from the audio, so it is in the oracle; the truth scales each bump by a random factor.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmtalker.synth.articulation import SubjectStyle, frame_times
from mmtalker.synth.visemes import PAUSE, is_vowel

MIN_PAUSE = 0.1
"""Shortest pause (seconds) that invites a blink."""
PAUSE_WINDOW = 0.3
"""A pause blink starts within this many seconds of the pause's start."""
REFRACTORY = 0.5
"""Seconds after a blink's start in which no other blink starts."""
BROW_HALF_WIDTH = 0.22
"""Seconds from a brow bump's peak to its foot."""
MINOR_ACCENT = 0.4
"""Brow raise on a stressed vowel that is not its phrase's nucleus, relative to the nucleus's."""
CLOSE_SHARE = 0.35
"""Share of a blink's duration spent closing; the rest is the (slower) opening."""


def blink_shape(t_rel: np.ndarray, duration: float) -> np.ndarray:
    """Lid closure (0 open, 1 shut) at ``t_rel`` seconds after a blink starts; (any,) → (any,).

    A raised-cosine close over ``CLOSE_SHARE * duration``, then a raised-cosine open over the rest.
    """
    t_rel = np.asarray(t_rel, dtype=np.float64)
    t_close = CLOSE_SHARE * duration
    closing = 0.5 * (1.0 - np.cos(np.pi * np.clip(t_rel / t_close, 0.0, 1.0)))
    opening = 0.5 * (1.0 + np.cos(np.pi * np.clip((t_rel - t_close) / (duration - t_close), 0.0, 1.0)))
    return np.where(t_rel < t_close, closing, opening) * ((t_rel >= 0) & (t_rel <= duration))


def pauses(phones: Sequence, min_pause: float = MIN_PAUSE) -> list[tuple[float, float]]:
    """(start, end) seconds of each pause phone at least ``min_pause`` long."""
    return [(p.start, p.end) for p in phones if p.symbol == PAUSE and p.end - p.start >= min_pause]


def _pause_window(start: float, end: float) -> float:
    return max(0.0, min(PAUSE_WINDOW, end - start))


def draw_blinks(phones: Sequence, duration: float, style: SubjectStyle, rng: np.random.Generator) -> list[float]:
    """Start times (seconds, sorted) of the truth's blinks in a clip of ``duration`` seconds."""
    starts = []
    for a, b in pauses(phones):
        if rng.uniform() < style.pause_blink_prob:
            starts.append(a + rng.uniform() * _pause_window(a, b))
    count = rng.poisson(style.blink_rate * duration)
    starts.extend(rng.uniform(0.0, duration, size=count).tolist())
    kept: list[float] = []
    for s in sorted(starts):
        if not kept or s - kept[-1] >= REFRACTORY:
            kept.append(float(s))
    return kept


def blink_curve(starts: Sequence[float], num_frames: int, fps: float, duration: float) -> np.ndarray:
    """(T,) lid closure from blinks starting at ``starts`` seconds, each ``duration`` long."""
    t = frame_times(num_frames, fps)
    curve = np.zeros(num_frames)
    for s in starts:
        curve = np.maximum(curve, blink_shape(t - s, duration))
    return curve


def expected_blink_curve(phones: Sequence, num_frames: int, fps: float, style: SubjectStyle,
                         quadrature: int = 16) -> np.ndarray:
    """(T,) the oracle's lid closure: pause blinks averaged over their random start, times their probability."""
    t = frame_times(num_frames, fps)
    curve = np.zeros(num_frames)
    u = (np.arange(quadrature) + 0.5) / quadrature  # midpoint rule over the uniform start
    for a, b in pauses(phones):
        s = a + u * _pause_window(a, b)  # (Q,)
        mean_shape = blink_shape(t[None, :] - s[:, None], style.blink_duration).mean(axis=0)
        curve = np.maximum(curve, style.pause_blink_prob * mean_shape)
    return curve


def brow_accents(phones: Sequence) -> list[tuple[float, float]]:
    """(time s, relative height) of each brow raise: every primary-stressed vowel, full height on the
    phrase's nucleus (its last primary stress before a pause), :data:`MINOR_ACCENT` of it on the others."""
    accents, phrase = [], []
    for p in list(phones) + [None]:
        if p is None or p.symbol == PAUSE:
            accents += [(t, 1.0 if i == len(phrase) - 1 else MINOR_ACCENT) for i, t in enumerate(phrase)]
            phrase = []
        elif p.stress == 1 and is_vowel(p.symbol):
            phrase.append(0.5 * (p.start + p.end))
    return sorted(accents)


def brow_curve(phones: Sequence, num_frames: int, fps: float, style: SubjectStyle,
               rng: np.random.Generator | None = None, amplitude_sd: float = 0.15) -> np.ndarray:
    """(T,) brow raise in [0, 1]: a bump on each accent of :func:`brow_accents` (random heights with ``rng``)."""
    t = frame_times(num_frames, fps)
    curve = np.zeros(num_frames)
    for centre, relative in brow_accents(phones):
        height = style.brow_amplitude * relative
        if rng is not None:
            height *= float(np.clip(1.0 + amplitude_sd * rng.standard_normal(), 0.5, 1.5))
        x = np.clip(np.abs(t - centre) / BROW_HALF_WIDTH, 0.0, 1.0)
        curve = np.maximum(curve, height * 0.5 * (1.0 + np.cos(np.pi * x)))
    return np.clip(curve, 0.0, 1.0)


def eye_curves(phones: Sequence, num_frames: int, fps: float, style: SubjectStyle,
               rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], list[float]]:
    """The upper face's channels: ``blink_left``, ``blink_right``, ``brow_raise``, each (T,).

    With ``rng`` the truth (random blinks, jittered brows) and the blink start times; without it the
    oracle (expected pause blinks, mean brows) and an empty list.
    """
    if rng is None:
        blink, starts = expected_blink_curve(phones, num_frames, fps, style), []
    else:
        duration = num_frames / fps
        starts = draw_blinks(phones, duration, style, rng)
        blink = blink_curve(starts, num_frames, fps, style.blink_duration)
    brows = brow_curve(phones, num_frames, fps, style, rng)
    return {"blink_left": blink, "blink_right": blink.copy(), "brow_raise": brows}, starts
