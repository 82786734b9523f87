"""Training-time speech augmentation, so a model trained on synthetic speech holds up on human speech.

The chain (each step with its own probability, all randomness from one ``numpy.random.Generator``, so
the same seed gives the same output): speed change by resampling (tempo and pitch together, +-10 %),
reverberation with a synthetic room impulse response (RT60 0.15-0.7 s), additive white or pink noise at
10-30 dB SNR, gain of -25..+5 dB. These ranges are the ones that helped in a trial here (its notes are not in
this repository).

A speed change alters the clip's length: :func:`augment` returns the time-stretch factor (output duration
/ input duration) and the caller must resample the motion targets by the same factor. Every other step
keeps the length and the timing (the reverb is causal: no output sample depends on later input).
Output is not clipped: float audio above 1.0 after a gain boost is left as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError

_DECAY_60DB = np.log(1000.0)  # amplitude falls by 60 dB (a factor 1000) over RT60


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation; set a probability to 0 to switch a step off."""

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)  # time-stretch factor (output/input duration)
    reverb_prob: float = 0.3
    rt60_range: tuple[float, float] = (0.15, 0.7)  # seconds
    drr_db_range: tuple[float, float] = (3.0, 15.0)  # direct-to-reverberant energy ratio: near to far talker
    noise_prob: float = 0.5
    snr_db_range: tuple[float, float] = (10.0, 30.0)
    noise_colors: tuple[str, ...] = ("white", "pink")
    gain_prob: float = 1.0
    gain_db_range: tuple[float, float] = (-25.0, 5.0)

    def __post_init__(self):
        for name in ("speed_prob", "reverb_prob", "noise_prob", "gain_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MMTalkerError(f"augment.{name}", f"is {getattr(self, name)}, not a probability in [0, 1]")
        for name in ("speed_range", "rt60_range", "drr_db_range", "snr_db_range", "gain_db_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise MMTalkerError(f"augment.{name}", f"is ({lo}, {hi}): the low end is above the high end")
        if self.speed_range[0] <= 0 or self.rt60_range[0] <= 0:
            raise MMTalkerError("augment", "speed_range and rt60_range must be positive")
        bad = set(self.noise_colors) - {"white", "pink"}
        if bad or not self.noise_colors:
            raise MMTalkerError("augment.noise_colors", f"is {self.noise_colors}", "use 'white' and/or 'pink'")


@dataclass
class Augmented:
    """Result of :func:`augment`.

    Attributes:
        audio: (N',) float32, the augmented clip at the input's sample rate.
        stretch: N' / N duration factor from the speed change (1.0 when none was applied); resample the
            motion targets to ``round(T * stretch)`` frames.
        applied: what was done, e.g. ``{"speed": 1.04, "rt60": 0.3, "drr_db": 8.0, "snr_db": 17.0,
            "noise": "pink", "gain_db": -6.0}``.
    """

    audio: np.ndarray
    stretch: float
    applied: dict


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale (N,) audio by ``gain_db`` decibels."""
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def make_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """(N,) float64 noise of unit power: ``"white"`` (flat spectrum) or ``"pink"`` (power ~ 1/f)."""
    white = rng.standard_normal(num_samples)
    if color == "white":
        noise = white
    elif color == "pink":
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0  # keep the DC bin finite; it is removed below
        noise = np.fft.irfft(spectrum / np.sqrt(f), n=num_samples)
        noise -= noise.mean()
    else:
        raise ValueError(f"unknown noise colour {color!r}; use 'white' or 'pink'")
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """Add noise so that mean(audio²) / mean(noise²) is exactly ``snr_db`` dB (over the whole clip).
    A silent clip is returned unchanged."""
    power = float(np.mean(np.asarray(audio, np.float64) ** 2))
    if power == 0.0:
        return audio.astype(np.float32)
    noise = make_noise(audio.size, color, rng) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (audio + noise).astype(np.float32)


def room_impulse_response(
    rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, drr_db: float = 10.0
) -> np.ndarray:
    """Synthetic room response: a direct-path impulse followed by exponentially decaying noise.

    The tail's amplitude falls by 60 dB over ``rt60`` seconds; it lasts ``rt60`` seconds; its energy is
    ``drr_db`` dB below the direct path's. The whole response is scaled to unit energy so the
    reverberant speech keeps about the dry speech's level.

    Returns:
        (rt60 * sample_rate,) float64, entry 0 the direct path.
    """
    n = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal(n) * np.exp(-_DECAY_60DB * t / rt60)
    ir *= np.sqrt(10.0 ** (-drr_db / 10.0)) / max(np.sqrt(np.sum(ir[1:] ** 2)), 1e-12)
    ir[0] = 1.0
    return ir / np.sqrt(np.sum(ir**2))


def reverberate(
    audio: np.ndarray, rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, drr_db: float = 10.0
) -> np.ndarray:
    """Convolve (N,) audio with :func:`room_impulse_response` (FFT convolution), cut to N samples: causal,
    same length, same timing (the direct path has no delay)."""
    ir = room_impulse_response(rt60, rng, sample_rate, drr_db)
    n = audio.size + ir.size - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(ir, size), size)[: audio.size]
    return wet.astype(np.float32)


def change_speed(audio: np.ndarray, stretch: float, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Play (N,) audio ``1 / stretch`` times as fast (tempo and pitch together) by resampling.

    Returns:
        (audio of about N * stretch samples, the exact stretch factor used: the ratio of the two
        integer rates, ``len(out) == round(N * factor)`` to within one sample).
    """
    target_rate = int(round(sample_rate * stretch))
    if target_rate == sample_rate:
        return audio.astype(np.float32), 1.0
    out = soxr.resample(audio.astype(np.float32), sample_rate, target_rate)
    return out.astype(np.float32), target_rate / sample_rate


def _maybe(rng: np.random.Generator, prob: float) -> bool:
    return prob > 0 and rng.random() < prob


def augment(
    audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig(), sample_rate: int = SAMPLE_RATE
) -> Augmented:
    """Apply the chain speed -> reverb -> noise -> gain to (N,) float audio (see the module docstring).

    The generator is always consumed in the same pattern for a given config, so a seed fixes the result.
    """
    audio = np.asarray(audio, dtype=np.float32)
    applied: dict = {}
    stretch = 1.0
    if _maybe(rng, config.speed_prob):
        audio, stretch = change_speed(audio, rng.uniform(*config.speed_range), sample_rate)
        applied["speed"] = stretch
    if _maybe(rng, config.reverb_prob):
        applied["rt60"] = rng.uniform(*config.rt60_range)
        applied["drr_db"] = rng.uniform(*config.drr_db_range)
        audio = reverberate(audio, applied["rt60"], rng, sample_rate, applied["drr_db"])
    if _maybe(rng, config.noise_prob):
        applied["snr_db"] = rng.uniform(*config.snr_db_range)
        applied["noise"] = config.noise_colors[rng.integers(len(config.noise_colors))]
        audio = add_noise(audio, applied["snr_db"], rng, applied["noise"])
    if _maybe(rng, config.gain_prob):
        applied["gain_db"] = rng.uniform(*config.gain_db_range)
        audio = apply_gain(audio, applied["gain_db"])
    return Augmented(audio=audio, stretch=stretch, applied=applied)
