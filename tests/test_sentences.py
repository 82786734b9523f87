"""Sentences of the synthetic benchmark: determinism, disjoint splits, length, grammar, sound coverage."""

from __future__ import annotations

import re

import pytest

from mmtalker.errors import MMTalkerError
from mmtalker.synth import ipa
from mmtalker.synth.sentences import MAX_WORDS, MIN_WORDS, SPLITS, grammar, make_sentences, split_of


def test_same_seed_same_sentences_other_seed_others():
    a = make_sentences("train", 40, seed=7)
    assert a == make_sentences("train", 40, seed=7)
    b = make_sentences("train", 40, seed=8)
    assert a != b
    assert len(set(a)) == 40
    assert make_sentences("val", 0, seed=1) == []
    # a longer list starts like the shorter one: asking for more does not reshuffle
    assert make_sentences("train", 60, seed=7)[:40] == a


def test_splits_are_disjoint_whatever_the_seed():
    pools = {split: set() for split in SPLITS}
    for seed in (0, 1, 2):
        for split, count in (("train", 200), ("val", 60), ("test", 60)):
            drawn = make_sentences(split, count, seed)
            assert all(split_of(s) == split for s in drawn)
            pools[split].update(drawn)
    assert not pools["train"] & pools["val"]
    assert not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    # the split ignores case and punctuation, so near-identical spellings cannot leak
    s = next(iter(pools["test"]))
    assert split_of(s.upper().rstrip(".?") + "!") == "test"


def test_sentences_are_well_formed():
    data = grammar()
    for s in make_sentences("train", 300, seed=0):
        words = s.split()
        assert MIN_WORDS <= len(words) <= MAX_WORDS, s
        assert s[0].isupper() and s[-1] in ".?", s
        assert "{" not in s and "}" not in s, s
        assert not re.search(r"\d", s), s  # numbers are spelt out, so text words are spoken words
        assert not re.search(r"\ba [aeiouAEIOU]", s), s
    assert len(data["templates"]) >= 10
    vocabulary = {w.lower() for k, v in data.items() if k not in ("about", "templates", "verb_pair")
                  for item in v for w in item.split()}
    assert 250 <= len(vocabulary) <= 800


def test_slots_with_a_digit_never_repeat_the_first_word():
    for s in make_sentences("train", 300, seed=5):
        m = re.match(r"We met (\w+) and (\w+) in", s)
        if m:
            assert m.group(1) != m.group(2), s


def test_bad_requests_are_user_errors():
    with pytest.raises(MMTalkerError, match="split"):
        make_sentences("dev", 3, 0)
    with pytest.raises(MMTalkerError):
        make_sentences("train", -1, 0)


@pytest.mark.synth
def test_sentences_cover_lips_teeth_rounding_and_opening():
    pytest.importorskip("espeakng_loader")
    from mmtalker.synth.speech import Voice, synthesize

    sentences = make_sentences("train", 40, seed=0)
    classes = {"bilabial": {"p", "b", "m"}, "labiodental": {"f", "v"},
               "rounded": {"u", "ʊ", "oʊ", "ɔ", "w", "ɒ"}, "open": {"ɑ", "æ", "aɪ", "aʊ"}}
    hits = dict.fromkeys(classes, 0)
    for s in sentences:
        symbols = {p.symbol for p in synthesize(s, Voice("espeak", "en-us")).phones}
        assert all(ipa.is_canonical(x) for x in symbols), symbols
        for name, members in classes.items():
            hits[name] += bool(symbols & members)
    assert hits["bilabial"] >= 0.9 * len(sentences), hits
    assert hits["labiodental"] >= 0.5 * len(sentences), hits
    assert hits["rounded"] >= 0.8 * len(sentences), hits
    assert hits["open"] >= 0.8 * len(sentences), hits
