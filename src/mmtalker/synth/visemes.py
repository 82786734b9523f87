"""Visemes: what each IPA phone asks of the mouth.

A viseme gives, for each articulation channel of the rig (:data:`ARTICULATION`), a *target* in [0, 1]
and a *dominance* (how strongly the phone imposes that target on its neighbours, in the sense of
Cohen & Massaro's coarticulation model). Phones with the same mouth shape share a viseme, as in the
usual ~12-class viseme sets. The table is phonetics, not a dataset fact.

Symbols come from espeak-ng (``"aɪ"``, ``"ɑːɹ"``, ``"n̩"``) or Piper (one character each); stress and
length marks and diacritics are stripped before the look-up, then the longest known prefix wins,
so ``"ɪɹ"`` reads as ``"ɪ"`` and an unknown consonant falls back to a neutral, weakly dominant viseme.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ARTICULATION = ("jaw_open", "lip_close", "lip_round", "lip_spread", "lower_lip_tuck")
"""The rig channels driven by speech, in the order of :attr:`Viseme.targets`."""

PAUSE = "_"
"""The phone symbol of silence and pauses."""

KINDS = ("pause", "bilabial", "labiodental", "open_vowel", "vowel", "consonant")


@dataclass(frozen=True)
class Viseme:
    """One mouth shape.

    Attributes:
        name: the class name (``"bilabial"``, ``"open"``, ``"rounded"``, ...).
        kind: one of :data:`KINDS`; ``bilabial`` and ``labiodental`` closures and ``open_vowel`` openings
            are hard constraints over the phone's central span (see :mod:`mmtalker.synth.articulation`).
        targets: per :data:`ARTICULATION` channel, the value in [0, 1] the phone aims at.
        dominance: per channel, the Cohen–Massaro dominance magnitude (> 0); high = this phone wins.
    """

    name: str
    kind: str
    targets: tuple[float, ...]
    dominance: tuple[float, ...]


def _v(name, kind, jaw, close, rnd, spread, tuck, dom):
    return Viseme(name, kind, (jaw, close, rnd, spread, tuck), tuple(dom))


# Dominance columns follow ARTICULATION: jaw, close, round, spread, tuck. A consonant made with the
# tongue barely constrains the jaw or the lips (low dominance), so vowels shape it: that is coarticulation.
_REST = _v("rest", "pause", 0.0, 0.6, 0.0, 0.0, 0.0, (1.0, 1.0, 1.0, 1.0, 1.0))
_VISEMES = {
    "bilabial": _v("bilabial", "bilabial", 0.08, 1.0, 0.1, 0.0, 0.0, (0.6, 8.0, 0.3, 0.6, 2.0)),
    "labiodental": _v("labiodental", "labiodental", 0.12, 0.0, 0.0, 0.1, 1.0, (0.6, 2.0, 0.6, 0.5, 8.0)),
    "dental": _v("dental", "consonant", 0.18, 0.0, 0.0, 0.2, 0.0, (0.5, 0.8, 0.3, 0.3, 1.0)),
    "alveolar": _v("alveolar", "consonant", 0.15, 0.0, 0.0, 0.15, 0.0, (0.25, 0.6, 0.15, 0.2, 0.8)),
    "sibilant": _v("sibilant", "consonant", 0.08, 0.0, 0.0, 0.35, 0.0, (0.6, 0.6, 0.3, 0.4, 0.8)),
    "postalveolar": _v("postalveolar", "consonant", 0.12, 0.0, 0.65, 0.0, 0.0, (0.6, 0.6, 1.2, 0.8, 0.8)),
    "velar": _v("velar", "consonant", 0.25, 0.0, 0.0, 0.0, 0.0, (0.15, 0.5, 0.1, 0.1, 0.8)),
    "rhotic": _v("rhotic", "consonant", 0.2, 0.0, 0.45, 0.0, 0.0, (0.3, 0.6, 0.8, 0.5, 0.8)),
    "glide_w": _v("glide_w", "consonant", 0.12, 0.0, 0.95, 0.0, 0.0, (0.5, 0.6, 2.0, 1.2, 0.8)),
    "glide_j": _v("glide_j", "consonant", 0.1, 0.0, 0.0, 0.6, 0.0, (0.5, 0.6, 0.6, 1.0, 0.8)),
    "open": _v("open", "open_vowel", 0.95, 0.0, 0.0, 0.1, 0.0, (2.0, 1.0, 0.8, 0.8, 1.0)),
    "open_back": _v("open_back", "open_vowel", 0.85, 0.0, 0.35, 0.0, 0.0, (2.0, 1.0, 1.0, 0.8, 1.0)),
    "mid": _v("mid", "vowel", 0.45, 0.0, 0.0, 0.3, 0.0, (1.2, 1.0, 0.6, 0.8, 1.0)),
    "schwa": _v("schwa", "vowel", 0.35, 0.0, 0.0, 0.1, 0.0, (0.7, 0.8, 0.4, 0.4, 1.0)),
    "rhotic_vowel": _v("rhotic_vowel", "vowel", 0.3, 0.0, 0.4, 0.0, 0.0, (0.8, 0.8, 0.8, 0.5, 1.0)),
    "close_front": _v("close_front", "vowel", 0.18, 0.0, 0.0, 0.85, 0.0, (1.0, 1.0, 0.8, 1.5, 1.0)),
    "rounded": _v("rounded", "vowel", 0.3, 0.0, 0.9, 0.0, 0.0, (1.0, 1.0, 1.8, 1.2, 1.0)),
    "close_back": _v("close_back", "vowel", 0.2, 0.0, 1.0, 0.0, 0.0, (1.0, 1.0, 2.0, 1.2, 1.0)),
    "neutral": _v("neutral", "consonant", 0.2, 0.0, 0.0, 0.0, 0.0, (0.1, 0.4, 0.1, 0.1, 0.5)),
}

# IPA (espeak-ng en-us and Piper) → viseme class. Diphthongs take their first, more open, element.
_PHONES = {
    "bilabial": "p b m",
    "labiodental": "f v",
    "dental": "θ ð",
    "alveolar": "t d n l ɾ ɫ ʔ",
    "sibilant": "s z",
    "postalveolar": "ʃ ʒ tʃ dʒ",
    "velar": "k g ɡ ŋ x h",
    "rhotic": "ɹ r",
    "rhotic_vowel": "ɚ ɝ",
    "glide_w": "w ʍ",
    "glide_j": "j",
    "open": "a æ ɑ aɪ aʊ",
    "open_back": "ɒ ɔ ɔɪ ʌ",
    "mid": "e ɛ eɪ ɜ ɐ",
    "schwa": "ə ᵻ ɨ",
    "close_front": "i ɪ y",
    "rounded": "o oʊ əʊ ɵ",
    "close_back": "u ʊ ɯ",
}
_TABLE = {sym: _VISEMES[name] for name, syms in _PHONES.items() for sym in syms.split()}
_STRIP = set("ˈˌːˑ̩̯̃ʰʲ̪-.'")


def normalize(symbol: str) -> str:
    """The phone symbol without stress, length and diacritic marks (NFC): ``"ˈɑːɹ"`` → ``"ɑɹ"``."""
    text = unicodedata.normalize("NFD", symbol)
    kept = "".join(ch for ch in text if ch not in _STRIP and not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", kept)


def viseme_for(symbol: str) -> Viseme:
    """The viseme of one IPA phone (``"_"`` for a pause gives the rest pose).

    The longest known prefix of the normalised symbol decides (``"aɪ"`` before ``"a"``); a symbol with
    no known prefix is a neutral consonant of low dominance, so its neighbours shape the mouth.
    """
    if symbol == PAUSE or symbol.strip() == "":
        return _REST
    key = normalize(symbol)
    for end in range(len(key), 0, -1):
        hit = _TABLE.get(key[:end])
        if hit is not None:
            return hit
    return _VISEMES["neutral"]


def kind_of(symbol: str) -> str:
    """The :attr:`Viseme.kind` of a phone: ``"bilabial"``, ``"open_vowel"``, ``"pause"``, ..."""
    return viseme_for(symbol).kind


def is_vowel(symbol: str) -> bool:
    """True for vowels (open or not); syllables, and hence stress, live on these."""
    return viseme_for(symbol).kind in ("vowel", "open_vowel")
