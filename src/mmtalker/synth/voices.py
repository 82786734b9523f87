"""One voice per synthetic subject: engine, accent, variant, pitch and rate, drawn from a seed.

With both engines installed, about half the subjects speak with Piper (natural, one speaker: its
subjects differ only in rate, since Piper has no pitch control) and the rest with espeak-ng (many
accents and voice variants, pitch and rate). With one engine, every subject uses it.
"""

from __future__ import annotations

import itertools

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.synth.speech import INSTALL_HINT, Voice, available_engines

ESPEAK_ACCENTS = ("en-us", "en-gb-x-rp", "en", "en-us-nyc", "en-gb-scotland", "en-029")
"""espeak-ng English voices used (American first: it is drawn twice as often)."""
ESPEAK_VARIANTS = (None, "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
"""espeak-ng's standard male and female variants (the novelty ones like ``whisper`` are left out)."""
PIPER_VOICE = "joe"
RATE_RANGE = (0.85, 1.15)
PITCH_RANGE = (35, 65)


def make_voices(num_subjects: int, seed: int) -> list[Voice]:
    """``num_subjects`` different voices, the same for the same seed and installed engines.

    Raises:
        MMTalkerError: when no speech engine is installed.
    """
    if num_subjects < 0:
        raise MMTalkerError("number of subjects", f"{num_subjects} is negative")
    engines = available_engines()
    if not engines:
        raise MMTalkerError("speech engines", "none is installed", INSTALL_HINT)
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFF)
    n_piper = num_subjects // 2 if len(engines) == 2 else (num_subjects if engines == ["piper"] else 0)
    kinds = np.array(["piper"] * n_piper + ["espeak"] * (num_subjects - n_piper))
    kinds = kinds[rng.permutation(num_subjects)]
    piper = iter(_piper_voices(n_piper, rng))
    espeak = iter(_espeak_voices(num_subjects - n_piper, rng))
    return [next(piper) if kind == "piper" else next(espeak) for kind in kinds]


def _piper_voices(n: int, rng: np.random.Generator) -> list[Voice]:
    """Piper subjects differ by rate only: distinct rates on a 0.001 grid while there are enough."""
    grid = np.arange(round(RATE_RANGE[0] * 1000), round(RATE_RANGE[1] * 1000) + 1) / 1000
    rates = rng.choice(grid, size=n, replace=n > len(grid))
    return [Voice("piper", PIPER_VOICE, 50, float(r)) for r in rates]


def _espeak_voices(n: int, rng: np.random.Generator) -> list[Voice]:
    """espeak-ng subjects: distinct (accent, variant) pairs while there are enough, random pitch and rate."""
    accents = (ESPEAK_ACCENTS[0],) + ESPEAK_ACCENTS  # American twice as likely
    pairs = list(itertools.product(accents, ESPEAK_VARIANTS))
    order = rng.permutation(len(pairs))
    voices, used = [], set()
    for i in range(n):
        accent, variant = pairs[order[i % len(pairs)]]
        if (accent, variant) in used and len(used) < len(set(pairs)):
            accent, variant = next(p for p in (pairs[j] for j in order) if p not in used)
        used.add((accent, variant))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        rate = round(float(rng.uniform(*RATE_RANGE)), 2)
        voices.append(Voice("espeak", accent, pitch, rate, variant))
    return voices
