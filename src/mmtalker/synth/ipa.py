"""One phone inventory for English, whatever engine spoke.

espeak-ng reports phonemes as IPA strings that may hold stress, length marks, diacritics and more
than one sound (``"ˈɑːɹ"``, ``"n̩"``, ``"ˈaɪɚ"``); Piper reports one IPA character per token (``"o"``,
``"ʊ"``). Both are brought to the inventory below, so that the same word gives the same symbols.

Canonical inventory (:data:`PHONES`), General American flavoured, length marks dropped (length is
not phonemic in GA; the timing carries it):

- consonants: ``p b t d k ɡ f v θ ð s z ʃ ʒ h tʃ dʒ m n ŋ l ɹ w j ʔ``
- monophthongs: ``i ɪ ɛ æ ɑ ɒ ɔ ʊ u ʌ ə ɚ ɜ``
- diphthongs, each ONE phone: ``eɪ aɪ aʊ ɔɪ oʊ``
- pause: ``_`` (silence, punctuation, the start and end of the audio)

Mappings applied on the way (the engines' accents differ; these keep the mouth shape):
flap ``ɾ`` → ``t``; ``ᵻ ɨ`` → ``ɪ``; ``ɐ`` → ``ə``; ``ɝ`` → ``ɚ``; ``a`` → ``æ`` (British trap);
``e`` → ``ɛ``; ``o`` → ``oʊ``; ``əʊ əu ʌʊ ʌʉ`` → ``oʊ``; ``ei`` → ``eɪ``; ``æʊ`` → ``aʊ``; ``oɪ`` → ``ɔɪ``;
``əɪ`` → ``aɪ``; ``ʉ`` → ``u``; ``r`` → ``ɹ``; ``ʍ`` → ``w``; ``ɫ`` → ``l``; ``x`` → ``k``; ``g`` → ``ɡ``.
Syllabic and dental marks are dropped (``n̩`` → ``n``). An espeak string of several sounds becomes
several phones (``ɑːɹ`` → ``ɑ ɹ``, ``əl`` → ``ə l``); see :func:`split_weights`.
"""

from __future__ import annotations

import unicodedata

PAUSE = "_"
"""The phone symbol of silence and pauses."""

CONSONANTS = ("p", "b", "t", "d", "k", "ɡ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "tʃ", "dʒ",
              "m", "n", "ŋ", "l", "ɹ", "w", "j", "ʔ")
MONOPHTHONGS = ("i", "ɪ", "ɛ", "æ", "ɑ", "ɒ", "ɔ", "ʊ", "u", "ʌ", "ə", "ɚ", "ɜ")
DIPHTHONGS = ("eɪ", "aɪ", "aʊ", "ɔɪ", "oʊ")
VOWELS = MONOPHTHONGS + DIPHTHONGS
PHONES = CONSONANTS + VOWELS + (PAUSE,)
"""Every symbol a normalised :class:`~mmtalker.synth.speech.Phone` may carry."""

STRESS_MARKS = {"ˈ": 1, "ˌ": 2}
"""Primary stress → 1, secondary → 2 (0 = unstressed)."""
LENGTH_MARKS = frozenset("ːˑ:")

# Source unit → canonical phone. Multi-character units are matched before single characters.
_UNITS = {
    **{p: p for p in CONSONANTS + VOWELS},
    "əʊ": "oʊ", "əu": "oʊ", "ʌʊ": "oʊ", "ʌʉ": "oʊ", "ei": "eɪ", "æʊ": "aʊ", "oɪ": "ɔɪ", "əɪ": "aɪ",
    "ɾ": "t", "ᵻ": "ɪ", "ɨ": "ɪ", "ɐ": "ə", "ɝ": "ɚ", "a": "æ", "e": "ɛ", "o": "oʊ", "ʉ": "u",
    "r": "ɹ", "ʍ": "w", "ɫ": "l", "x": "k", "g": "ɡ",
}
_MAX_UNIT = max(len(u) for u in _UNITS)
JOINABLE = frozenset(DIPHTHONGS + ("tʃ", "dʒ"))
"""Two-character phones that Piper spells as two tokens (``o`` + ``ʊ``): its en-us output uses these
letter pairs for nothing else."""


def parse(symbol: str) -> tuple[list[str], int]:
    """An engine's phoneme string → (canonical phones, stress).

    Args:
        symbol: one espeak-ng phoneme (``"ˈɑːɹ"``) or a Piper token group (``"ˈo"``, ``"ʊ"``).
            Empty, blank or punctuation-only strings are pauses.

    Returns:
        ``([PAUSE], 0)`` for a pause; otherwise the phones in order and the stress (0, 1 or 2) of
        the whole string. A character outside the inventory and its mappings is kept as it is
        (:func:`is_canonical` tells).
    """
    stress = 0
    kept = []
    for ch in unicodedata.normalize("NFD", symbol):
        if ch in STRESS_MARKS:
            stress = stress or STRESS_MARKS[ch]
        elif ch in LENGTH_MARKS or unicodedata.combining(ch):
            continue
        elif unicodedata.category(ch) in ("Ll", "Lu", "Lo"):  # letters; modifier letters (ʰ ʲ) dropped
            kept.append(ch)
    text = unicodedata.normalize("NFC", "".join(kept))
    if not text:
        return [PAUSE], 0
    phones, i = [], 0
    while i < len(text):
        for size in range(min(_MAX_UNIT, len(text) - i), 0, -1):
            unit = text[i:i + size]
            if unit in _UNITS or size == 1:
                phones.append(_UNITS.get(unit, unit))
                i += size
                break
    return phones, stress


def is_canonical(symbol: str) -> bool:
    """True when ``symbol`` belongs to :data:`PHONES`."""
    return symbol in PHONES


def is_vowel(symbol: str) -> bool:
    """True for the canonical vowels (monophthongs and diphthongs)."""
    return symbol in VOWELS


def split_weights(phones: list[str]) -> list[float]:
    """Shares of one espeak phoneme's duration given to each of the phones it holds (sum 1).

    espeak-ng times its compound phonemes (``ɑːɹ``, ``aɪɚ``, ``əl``) as one unit; its parts get
    3 shares for a full vowel and 2 for a consonant or a schwa-like vowel (``ə``, ``ɚ``), so
    ``ɑ ɹ`` splits 60/40 and ``ə l`` 50/50. This is the only place where a boundary is estimated
    rather than reported by the engine.
    """
    raw = [3.0 if is_vowel(p) and p not in ("ə", "ɚ") else 2.0 for p in phones]
    total = sum(raw)
    return [w / total for w in raw]
