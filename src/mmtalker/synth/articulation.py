"""Coarticulated articulation curves: phones in time → per-frame rig channels for the mouth.

The model is Cohen & Massaro's: each phone ``i`` pulls channel ``c`` towards its viseme target
``T_ic`` with a dominance that falls off with the distance to the phone's centre ``c_i``,

    D_ic(t) = α_ic · exp(-(|t - c_i| / τ_i)^κ),      x_c(t) = Σ_i D_ic(t) T_ic / Σ_i D_ic(t),

where ``τ_i`` grows with the phone's duration (up to a cap) and the subject's smoothness, and is longer before
the centre than after it (anticipation). Blending alone never quite closes the lips between two
vowels, so three phone kinds are hard constraints over their central span (at least the frame
nearest the centre; when two such phones share that frame, the closure wins): bilabials (p, b, m)
close the lips (``lip_close = 1``, jaw ≤ 0.3), labiodentals (f, v) tuck the lower lip
(``lower_lip_tuck = 1``), open vowels open the jaw (at least :data:`OPEN_FLOOR` of their target).
Constraint weights fall off with a raised cosine outside the span.

A :class:`SubjectStyle` (amplitude, timing offset, anticipation, smoothness, and the eyes' habits) is
drawn per subject from the seed. The *truth* adds per-phone amplitude jitter and a smooth time warp
(:class:`Jitter`); the *oracle* is the same call without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from mmtalker.synth.visemes import ARTICULATION, viseme_for

KAPPA = 1.5
"""Dominance falloff exponent: > 1 keeps the blend smooth at each phone's centre."""
OPEN_FLOOR = 0.6
"""An open vowel's jaw reaches at least this share of its (amplitude-scaled) target at its centre."""
CLOSED_JAW = 0.3
"""The jaw opening allowed while the lips are held closed (the rig closes them for jaw ≤ 0.4)."""
WINDOW_MARGIN = 0.010
"""Seconds added to half a frame in a constraint's span, more than the truth's time warp can move."""
TAU_MAX_DURATION = 0.15
"""Seconds: a phone longer than this (a long pause) reaches no further than one of this length."""
RAMP = 0.04
"""Seconds over which a constraint's weight falls from 1 to 0 outside its span."""


@dataclass(frozen=True)
class SubjectStyle:
    """How one synthetic subject articulates, blinks and raises the brows.

    Attributes:
        amplitude: scale of the jaw opening (1 = the viseme table).
        lip_amplitude: scale of rounding and spreading.
        timing_offset: seconds added to every phone centre (< 0: the face leads the voice).
        anticipation: how much longer the dominance reaches before a phone than after it (≥ 1).
        smoothness: scale of every dominance time constant (> 1: lazier, more coarticulation).
        brow_amplitude: brow raise on a stressed syllable, in [0, 1].
        blink_rate: random blinks per second.
        pause_blink_prob: probability of a blink at each pause.
        blink_duration: seconds from lid start to lid open again.
    """

    amplitude: float = 1.0
    lip_amplitude: float = 1.0
    timing_offset: float = 0.0
    anticipation: float = 1.4
    smoothness: float = 1.0
    brow_amplitude: float = 0.4
    blink_rate: float = 0.15
    pause_blink_prob: float = 0.6
    blink_duration: float = 0.25

    def to_dict(self) -> dict:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}


def draw_style(seed: int, subject: int) -> SubjectStyle:
    """The style of subject number ``subject``, a pure function of ``(seed, subject)``."""
    rng = np.random.default_rng([int(seed), int(subject), 0x5717])
    u = rng.uniform(size=9)
    return SubjectStyle(
        amplitude=0.8 + 0.4 * u[0],
        lip_amplitude=0.75 + 0.5 * u[1],
        timing_offset=-0.02 + 0.03 * u[2],
        anticipation=1.1 + 0.7 * u[3],
        smoothness=0.8 + 0.5 * u[4],
        brow_amplitude=0.25 + 0.4 * u[5],
        blink_rate=0.08 + 0.2 * u[6],
        pause_blink_prob=0.4 + 0.4 * u[7],
        blink_duration=0.2 + 0.1 * u[8],
    )


@dataclass(frozen=True)
class Jitter:
    """The truth's departures from the oracle, drawn once per sequence.

    Attributes:
        amplitude: (P,) factor on each phone's jaw/round/spread targets (≈ 1).
        warp: (T,) seconds added to each frame's time (a smooth curve, |warp| < WINDOW_MARGIN).
    """

    amplitude: np.ndarray
    warp: np.ndarray


def draw_jitter(rng: np.random.Generator, num_phones: int, num_frames: int, fps: float,
                *, amplitude_sd: float = 0.08, warp_sd: float = 0.004) -> Jitter:
    """Per-phone amplitude factors (sd ``amplitude_sd``) and a smooth time warp (sd ``warp_sd`` s)."""
    amp = np.clip(1.0 + amplitude_sd * rng.standard_normal(num_phones), 0.7, 1.3)
    knots = max(2, int(np.ceil(num_frames / fps / 0.4)) + 1)  # one knot every ~0.4 s
    values = warp_sd * rng.standard_normal(knots)
    warp = np.interp(np.linspace(0, knots - 1, num_frames), np.arange(knots), values)
    warp = np.clip(warp, -0.8 * WINDOW_MARGIN, 0.8 * WINDOW_MARGIN)
    return Jitter(amplitude=amp, warp=warp)


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """(T,) seconds: frame ``k`` shows the face at ``k / fps``."""
    return np.arange(num_frames, dtype=np.float64) / float(fps)


def num_frames_for(duration: float, fps: float) -> int:
    """Frames covering ``duration`` seconds at ``fps``: ``T / fps`` is within half a frame of it."""
    return max(1, int(round(duration * fps)))


def _phone_arrays(phones: Sequence) -> tuple[np.ndarray, np.ndarray, list]:
    starts = np.array([p.start for p in phones], dtype=np.float64)
    ends = np.array([p.end for p in phones], dtype=np.float64)
    return 0.5 * (starts + ends), np.maximum(ends - starts, 1e-3), [viseme_for(p.symbol) for p in phones]


def _blend(t: np.ndarray, centres, durations, visemes, style: SubjectStyle, amp: np.ndarray) -> np.ndarray:
    """Cohen–Massaro blend: (C, T) channel values from (P,) phones at (T,) times."""
    targets = np.array([v.targets for v in visemes])  # (P, C)
    dominance = np.array([v.dominance for v in visemes])  # (P, C)
    scale = np.array([style.amplitude, 1.0, style.lip_amplitude, style.lip_amplitude, 1.0])
    targets = targets * scale
    targets[:, [0, 2, 3]] *= amp[:, None]
    tau = style.smoothness * (0.35 * np.minimum(durations, TAU_MAX_DURATION) + 0.025)  # (P,) seconds
    dt = t[None, :] - centres[:, None]  # (P, T)
    tau_side = np.where(dt < 0, tau[:, None] * style.anticipation, tau[:, None])
    log_falloff = -np.abs(dt / tau_side) ** KAPPA  # (P, T)
    log_d = np.log(dominance)[:, :, None] + log_falloff[:, None, :]  # (P, C, T)
    log_d -= log_d.max(axis=0, keepdims=True)  # no underflow far from every phone
    weight = np.exp(log_d)
    return np.clip((weight * targets[:, :, None]).sum(0) / weight.sum(0), 0.0, 1.0)


def _constraint_weights(t, centres, durations, fps, offset) -> np.ndarray:
    """(P, T) weight of each phone's hard constraint: 1 over its span, raised-cosine ramp outside.

    The span covers the central 60% of the phone and at least the frame nearest its centre in the
    audio, wherever the subject's timing offset and the truth's time warp have moved it.
    """
    half = np.maximum(0.3 * durations, 0.5 / fps + WINDOW_MARGIN + abs(offset))  # (P,)
    outside = np.abs(t[None, :] - centres[:, None]) - half[:, None]  # (P, T) seconds beyond the span
    x = np.clip(outside / RAMP, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def _assign(t, audio_t, centres, durations, visemes, idx, fps, offset) -> tuple[np.ndarray, np.ndarray]:
    """Which constraint each frame obeys (index into ``idx``) and how strongly: (T,) ints, (T,) weights.

    The strongest weight wins, ties go to the phone whose centre in the audio is nearest the frame, and
    the frame nearest a closure's (bilabial, labiodental) centre in the audio always belongs to it: when
    a phone is shorter than a frame, the closure is what a camera must not miss.
    """
    w = _constraint_weights(t, centres[idx], durations[idx], fps, offset)  # (K, T)
    dist = np.abs(audio_t[None, :] - (centres[idx] - offset)[:, None])  # (K, T) seconds in the audio
    order = np.lexsort((dist, -w), axis=0)[0]  # per frame: max weight, then min distance
    weight = w[order, np.arange(t.size)]
    for k, i in enumerate(idx):
        if visemes[i].kind != "open_vowel":
            frame = min(t.size - 1, max(0, int(round((centres[i] - offset) * fps))))
            order[frame], weight[frame] = k, 1.0
    return order, weight


def _apply_constraints(curves, t, audio_t, centres, durations, visemes, fps, style, amp) -> None:
    """Each frame obeys at most one constraint (see :func:`_assign`). In place on (C, T) ``curves``."""
    idx = np.array([i for i, v in enumerate(visemes) if v.kind in ("bilabial", "labiodental", "open_vowel")])
    if idx.size == 0:
        return
    order, weight = _assign(t, audio_t, centres, durations, visemes, idx, fps, style.timing_offset)
    jaw, close, tuck = curves[0], curves[1], curves[4]
    for k, i in enumerate(idx):
        m = order == k
        if not m.any():
            continue
        wk, kind = weight[m], visemes[i].kind
        if kind == "bilabial":
            close[m] += wk * (1.0 - close[m])
            jaw[m] += wk * (np.minimum(jaw[m], CLOSED_JAW) - jaw[m])
            tuck[m] *= 1.0 - wk
        elif kind == "labiodental":
            tuck[m] += wk * (1.0 - tuck[m])
            jaw[m] += wk * (np.minimum(jaw[m], CLOSED_JAW) - jaw[m])
            close[m] *= 1.0 - wk
        else:  # open vowel
            floor = min(1.0, OPEN_FLOOR * visemes[i].targets[0] * style.amplitude * amp[i])
            jaw[m] += wk * (np.maximum(jaw[m], floor) - jaw[m])
            close[m] *= 1.0 - wk
            tuck[m] *= 1.0 - wk


def articulation_curves(phones: Sequence, num_frames: int, fps: float, style: SubjectStyle,
                        jitter: Jitter | None = None) -> dict[str, np.ndarray]:
    """The mouth's rig channels over time.

    Args:
        phones: objects with ``symbol`` (IPA, ``"_"`` = pause), ``start`` and ``end`` (seconds).
        num_frames: T.
        fps: frames per second; frame ``k`` is at ``k / fps`` seconds.
        style: the subject's :class:`SubjectStyle`.
        jitter: the truth's :class:`Jitter`; None gives the oracle (expected) curves.

    Returns:
        dict channel → (T,) float64 in [0, 1] for each of :data:`ARTICULATION`.
    """
    if len(phones) == 0:
        raise ValueError("articulation_curves needs at least one phone")
    centres, durations, visemes = _phone_arrays(phones)
    centres = centres + style.timing_offset
    audio_t = frame_times(num_frames, fps)
    t, amp = audio_t, np.ones(len(phones))
    if jitter is not None:
        t, amp = audio_t + jitter.warp, jitter.amplitude
    curves = _blend(t, centres, durations, visemes, style, amp)
    _apply_constraints(curves, t, audio_t, centres, durations, visemes, fps, style, amp)
    return {name: np.clip(curves[c], 0.0, 1.0) for c, name in enumerate(ARTICULATION)}
