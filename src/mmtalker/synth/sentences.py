"""Sentences for the synthetic benchmark, from a small grammar written for this project.

The grammar (``sentences.json`` beside this module: templates with ``{slot}`` placeholders and about
400 words) makes statements and questions with names, places, cities and numbers, rich in
bilabials, labiodentals, rounded and open vowels, the sounds whose mouth shapes are easiest to check.

Splits are disjoint by construction: a sentence's split is fixed by a hash of its text
(:func:`split_of`), whatever the seed, so no sentence can be drawn for two splits. The seed only
decides which sentences of a split are drawn and in what order.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources

import numpy as np

from mmtalker.errors import MMTalkerError

SPLITS = ("train", "val", "test")
SPLIT_BUCKETS = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}
"""Share of the sentence space per split, in tenths of the hash (8:1:1)."""
MIN_WORDS, MAX_WORDS = 5, 12
_SLOT = re.compile(r"\{([a-z_]+?)(\d?)\}")


@lru_cache(maxsize=1)
def grammar() -> dict:
    """The templates and word lists (``sentences.json``)."""
    with resources.files("mmtalker.synth").joinpath("sentences.json").open(encoding="utf-8") as f:
        data = json.load(f)
    data["verb"] = [base for base, _ in data["verb_pair"]]
    data["verb_past"] = [past for _, past in data["verb_pair"]]
    return data


def split_of(sentence: str) -> str:
    """The split a sentence belongs to: a hash of its words, lower-cased, decides."""
    key = " ".join(re.findall(r"[a-z']+", sentence.lower()))
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 10
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def make_sentences(split: str, count: int, seed: int) -> list[str]:
    """``count`` different sentences of ``split``, the same for the same seed.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        count: how many (≥ 0).
        seed: any integer.

    Returns:
        Sentences of :data:`MIN_WORDS` to :data:`MAX_WORDS` words, numbers spelt out, ending in
        ``.`` or ``?``.
    """
    if split not in SPLITS:
        raise MMTalkerError("split", f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
    if count < 0:
        raise MMTalkerError("sentence count", f"{count} is negative")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLITS.index(split)])
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(200 * count + 1000):
        if len(out) == count:
            return out
        sentence = generate(rng)
        if sentence in seen or split_of(sentence) != split:
            continue
        seen.add(sentence)
        out.append(sentence)
    if len(out) == count:
        return out
    raise MMTalkerError("sentence count", f"could not make {count} different {split} sentences",
                        "ask for fewer sentences")


def generate(rng: np.random.Generator) -> str:
    """One sentence from a random template, :data:`MIN_WORDS` to :data:`MAX_WORDS` words long."""
    data = grammar()
    while True:
        template = data["templates"][rng.integers(len(data["templates"]))]
        sentence = _fill(template, data, rng)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            return sentence


def _fill(template: str, data: dict, rng: np.random.Generator) -> str:
    """Fill each ``{slot}``; ``{slot2}`` draws from the same list but never repeats ``{slot}``'s word."""
    used: dict[str, set[str]] = {}

    def pick(match: re.Match) -> str:
        category = match.group(1)
        choices = [w for w in data[category] if w not in used.get(category, set())]
        word = choices[rng.integers(len(choices))]
        used.setdefault(category, set()).add(word)
        return word

    text = _SLOT.sub(pick, template)
    text = re.sub(r"\ba (?=[aeiouAEIOU])", "an ", text)  # "a apple" → "an apple"
    return text[0].upper() + text[1:]
