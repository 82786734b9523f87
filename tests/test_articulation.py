"""Visemes, coarticulated articulation curves and the eyes' curves, checked on hand-made phone timings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.synth import articulation as art
from mmtalker.synth import eyes
from mmtalker.synth.visemes import ARTICULATION, kind_of, normalize, viseme_for


@dataclass
class Ph:
    """Duck-typed stand-in for speech.Phone."""

    symbol: str
    start: float
    end: float
    stress: int = 0
    word: int = 0


def tile(spec):
    """[(symbol, seconds[, stress])] → phones tiling time from 0."""
    out, t = [], 0.0
    for item in spec:
        sym, dur = item[0], item[1]
        stress = item[2] if len(item) > 2 else 0
        out.append(Ph(sym, t, t + dur, stress, -1 if sym == "_" else 0))
        t += dur
    return out, t


SYMBOLS = ["p", "b", "m", "f", "v", "ɑː", "æ", "aɪ", "ə", "i", "uː", "oʊ", "s", "t", "k", "l", "ɹ", "w", "ʃ", "ɛ"]


def random_phones(rng, n=30):
    spec = [("_", rng.uniform(0.1, 0.5))]
    for _ in range(n):
        if rng.uniform() < 0.08:
            spec.append(("_", rng.uniform(0.1, 0.4)))
        spec.append((SYMBOLS[rng.integers(len(SYMBOLS))], rng.uniform(0.015, 0.16), int(rng.integers(0, 3))))
    spec.append(("_", rng.uniform(0.1, 0.5)))
    return tile(spec)


def nearest_frame(t, fps, num_frames):
    return min(num_frames - 1, int(round(t * fps)))


# ---------------------------------------------------------------- visemes

def test_viseme_lookup_strips_marks_and_uses_longest_prefix():
    assert normalize("ˈɑːɹ") == "ɑɹ"
    assert normalize("n̩") == "n"
    assert kind_of("p") == kind_of("b") == kind_of("m") == "bilabial"
    assert kind_of("f") == kind_of("v") == "labiodental"
    assert kind_of("ˈɑː") == kind_of("aɪ") == kind_of("æ") == "open_vowel"
    assert kind_of("_") == "pause"
    assert kind_of("ə") == "vowel" and kind_of("ɚ") == "vowel"
    assert viseme_for("ɪɹ") is viseme_for("ɪ")  # longest known prefix
    assert viseme_for("☃").name == "neutral"
    for sym in SYMBOLS:
        v = viseme_for(sym)
        assert len(v.targets) == len(v.dominance) == len(ARTICULATION)
        assert all(0.0 <= x <= 1.0 for x in v.targets) and all(d > 0 for d in v.dominance)


# ---------------------------------------------------------------- the blend against a naive reference

def naive_blend(phones, num_frames, fps, style):
    """Cohen–Massaro by loops, for a phone list with no constrained phone."""
    out = np.zeros((len(ARTICULATION), num_frames))
    scale = [style.amplitude, 1.0, style.lip_amplitude, style.lip_amplitude, 1.0]
    for k in range(num_frames):
        t = k / fps
        for c in range(len(ARTICULATION)):
            num = den = 0.0
            for p in phones:
                v = viseme_for(p.symbol)
                centre = 0.5 * (p.start + p.end) + style.timing_offset
                tau = style.smoothness * (0.35 * min(p.end - p.start, art.TAU_MAX_DURATION) + 0.025)
                if t < centre:
                    tau *= style.anticipation
                d = v.dominance[c] * np.exp(-abs((t - centre) / tau) ** art.KAPPA)
                num += d * v.targets[c] * scale[c]
                den += d
            out[c, k] = min(1.0, max(0.0, num / den))
    return out


@pytest.mark.parametrize("subject", [0, 3])
def test_blend_matches_naive_reference(subject):
    style = art.draw_style(7, subject)
    phones, dur = tile([("_", 0.2), ("s", 0.08), ("ə", 0.1), ("t", 0.06), ("uː", 0.15), ("l", 0.07), ("i", 0.12), ("_", 0.3)])
    fps = 30.0
    T = art.num_frames_for(dur, fps)
    curves = art.articulation_curves(phones, T, fps, style)
    ref = naive_blend(phones, T, fps, style)
    for c, name in enumerate(ARTICULATION):
        assert_close(curves[name], ref[c], atol=1e-9, what=name)


# ---------------------------------------------------------------- hard constraints

@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
@pytest.mark.parametrize("with_jitter", [False, True])
def test_constraints_hold_at_every_centre(fps, with_jitter):
    rng = np.random.default_rng(int(fps) + with_jitter)
    open_checked = 0
    for trial in range(15):
        phones, dur = random_phones(rng)
        style = art.draw_style(trial, trial % 4)
        T = art.num_frames_for(dur, fps)
        jit = art.draw_jitter(rng, len(phones), T, fps) if with_jitter else None
        c = art.articulation_curves(phones, T, fps, style, jit)
        kinds_at: dict[int, set] = {}
        for p in phones:
            kinds_at.setdefault(nearest_frame(0.5 * (p.start + p.end), fps, T), set()).add(kind_of(p.symbol))
        for p in phones:
            k = nearest_frame(0.5 * (p.start + p.end), fps, T)
            kind = kind_of(p.symbol)
            # one frame cannot show two shapes (phones shorter than a frame): a closure beats an open vowel,
            # and a frame shared by a bilabial and a labiodental shows only one of them
            if kind == "open_vowel" and kinds_at[k] & {"bilabial", "labiodental"}:
                continue
            if {"bilabial", "labiodental"} <= kinds_at[k]:
                continue
            if kind == "bilabial":
                assert c["lip_close"][k] == pytest.approx(1.0), (p, k)
                assert c["jaw_open"][k] <= art.CLOSED_JAW + 1e-12
            elif kind == "labiodental":
                assert c["lower_lip_tuck"][k] == pytest.approx(1.0), (p, k)
                assert c["lip_close"][k] == pytest.approx(0.0, abs=1e-12)
            elif kind == "open_vowel":
                assert c["jaw_open"][k] >= art.OPEN_FLOOR * 0.7 * style.amplitude * 0.7 - 1e-9, (p, k)
                assert c["lip_close"][k] == pytest.approx(0.0, abs=1e-12)
                open_checked += 1
        for name in ARTICULATION:
            assert np.all((c[name] >= 0) & (c[name] <= 1)), name
    assert open_checked > 50


def test_short_open_vowel_between_bilabials_still_opens_and_closes():
    style = art.SubjectStyle(amplitude=0.8)
    phones, dur = tile([("_", 0.3), ("b", 0.05), ("æ", 0.07), ("m", 0.05), ("_", 0.3)])
    fps = 30.0
    T = art.num_frames_for(dur, fps)
    c = art.articulation_curves(phones, T, fps, style)
    kb, ka, km = (nearest_frame(0.5 * (p.start + p.end), fps, T) for p in phones[1:4])
    assert len({kb, ka, km}) == 3
    assert c["lip_close"][kb] == 1.0 and c["lip_close"][km] == 1.0
    assert c["jaw_open"][ka] >= art.OPEN_FLOOR * 0.95 * 0.8 - 1e-9 and c["lip_close"][ka] == 0.0


# ---------------------------------------------------------------- coarticulation and rest

def test_rounding_is_anticipated_across_consonants():
    fps = 100.0
    style = art.SubjectStyle()
    round_u, d1 = tile([("_", 0.3), ("s", 0.1), ("t", 0.08), ("uː", 0.15), ("_", 0.3)])
    spread_i, d2 = tile([("_", 0.3), ("s", 0.1), ("t", 0.08), ("i", 0.15), ("_", 0.3)])
    k = int(0.35 * fps)  # the middle of /s/
    cu = art.articulation_curves(round_u, art.num_frames_for(d1, fps), fps, style)
    ci = art.articulation_curves(spread_i, art.num_frames_for(d2, fps), fps, style)
    assert cu["lip_round"][k] > ci["lip_round"][k] + 0.1
    assert ci["lip_spread"][k] > cu["lip_spread"][k] + 0.1
    # more anticipation reaches further back
    eager = art.articulation_curves(round_u, art.num_frames_for(d1, fps), fps, art.SubjectStyle(anticipation=2.0))
    assert eager["lip_round"][k] > cu["lip_round"][k]


def test_face_rests_in_long_silence():
    fps = 30.0
    phones, dur = tile([("_", 1.0), ("ɑː", 0.2), ("_", 1.0)])
    c = art.articulation_curves(phones, art.num_frames_for(dur, fps), fps, art.SubjectStyle())
    rest = viseme_for("_").targets
    for k in (0, 5, -1, -5):
        for i, name in enumerate(ARTICULATION):
            assert c[name][k] == pytest.approx(rest[i], abs=0.02), (name, k)
    assert c["jaw_open"].max() > 0.8


def test_styles_are_deterministic_and_differ():
    assert art.draw_style(3, 1) == art.draw_style(3, 1)
    a, b = art.draw_style(3, 1), art.draw_style(3, 2)
    assert a != b and art.draw_style(4, 1) != a
    for s in range(20):
        st = art.draw_style(0, s)
        assert 0.8 <= st.amplitude <= 1.2 and st.anticipation >= 1.0 and 0 < st.pause_blink_prob < 1


def test_num_frames_within_half_a_frame():
    for dur in (0.5, 1.01, 2.345, 3.999):
        for fps in (25.0, 30.0, 60.0):
            assert abs(art.num_frames_for(dur, fps) / fps - dur) <= 0.5 / fps + 1e-12


# ---------------------------------------------------------------- eyes

def test_blink_shape():
    d = 0.25
    t = np.linspace(-0.1, 0.4, 501)
    s = eyes.blink_shape(t, d)
    assert s[t < 0].max() == 0 and s[t > d].max() == 0
    assert s.max() == pytest.approx(1.0, abs=1e-3)
    assert t[np.argmax(s)] == pytest.approx(eyes.CLOSE_SHARE * d, abs=2e-3)


def test_expected_blink_equals_monte_carlo_mean_of_pause_blinks():
    phones, dur = tile([("_", 0.3), ("ə", 0.5), ("_", 0.35), ("ɑː", 0.6), ("_", 0.4)])
    fps = 30.0
    T = art.num_frames_for(dur, fps)
    style = art.SubjectStyle(blink_rate=0.0, pause_blink_prob=0.7)
    oracle = eyes.expected_blink_curve(phones, T, fps, style, quadrature=64)
    rng = np.random.default_rng(0)
    n = 4000
    mean = np.zeros(T)
    for _ in range(n):
        starts = eyes.draw_blinks(phones, dur, style, rng)
        mean += eyes.blink_curve(starts, T, fps, style.blink_duration)
    mean /= n
    assert np.abs(mean - oracle).max() < 0.03
    assert oracle.max() > 0.2


def test_blinks_prefer_pauses_and_respect_refractory():
    phones, dur = tile([("_", 0.3)] + [("ə", 0.3), ("_", 0.3)] * 5)
    style = art.SubjectStyle(blink_rate=0.1, pause_blink_prob=0.8)
    rng = np.random.default_rng(1)
    in_pause = total = 0
    for _ in range(300):
        starts = eyes.draw_blinks(phones, dur, style, rng)
        assert all(b - a >= eyes.REFRACTORY for a, b in zip(starts, starts[1:]))
        total += len(starts)
        in_pause += sum(any(p.symbol == "_" and p.start <= s < p.start + eyes.PAUSE_WINDOW for p in phones) for s in starts)
    assert in_pause / total > 0.75


def test_brows_rise_on_stressed_vowels_only():
    phones, dur = tile([("_", 0.5), ("ə", 0.1, 0), ("ɑː", 0.15, 1), ("t", 0.08), ("_", 0.8), ("i", 0.12, 2), ("_", 0.5)])
    fps = 30.0
    T = art.num_frames_for(dur, fps)
    style = art.SubjectStyle(brow_amplitude=0.5)
    b = eyes.brow_curve(phones, T, fps, style)
    k = nearest_frame(0.5 * (phones[2].start + phones[2].end), fps, T)
    assert b[k] == pytest.approx(0.5, abs=0.03)
    k2 = nearest_frame(0.5 * (phones[5].start + phones[5].end), fps, T)
    assert b[k2] == 0.0 and b[0] == 0.0
    truth = eyes.brow_curve(phones, T, fps, style, np.random.default_rng(0))
    assert truth[k] > 0.2 and not np.allclose(truth, b)


def test_brows_peak_on_the_phrase_nucleus():
    spec = [("_", 0.3), ("ɑː", 0.15, 1), ("t", 0.1), ("ə", 0.2), ("t", 0.1), ("ɑː", 0.15, 1), ("_", 0.4),
            ("i", 0.15, 1), ("_", 0.3)]
    phones, dur = tile(spec)
    assert eyes.brow_accents(phones) == [(pytest.approx(0.375), eyes.MINOR_ACCENT), (pytest.approx(0.925), 1.0),
                                         (pytest.approx(1.475), 1.0)]
    fps = 100.0
    b = eyes.brow_curve(phones, art.num_frames_for(dur, fps), fps, art.SubjectStyle(brow_amplitude=0.5))
    assert b[38] == pytest.approx(0.5 * eyes.MINOR_ACCENT, abs=0.02)
    assert b[92] == pytest.approx(0.5, abs=0.02) and b[148] == pytest.approx(0.5, abs=0.02)
