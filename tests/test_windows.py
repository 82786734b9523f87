"""Windowed inference for long audio: window plan, crossfade weights, exactness for local models, no seams."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.audio.io import SAMPLE_RATE, load_audio
from mmtalker.errors import MMTalkerError
from mmtalker.inference.windows import (fade_in, frames_for_window, iter_windowed, plan_windows, run_windowed, window_audio,
                                        window_weights)

FPS = 25.0  # 640 samples per frame: window starts fall on whole samples
HOP = int(SAMPLE_RATE / FPS)


@pytest.mark.parametrize("T, W, O", [(1, 10, 2), (10, 10, 2), (11, 10, 2), (100, 10, 0), (100, 10, 4), (537, 50, 12), (60, 50, 12)])
def test_plan_covers_every_frame_with_exact_overlaps(T, W, O):
    wins = plan_windows(T, W, O)
    assert wins[0].start == 0 and wins[-1].end == T
    for a, b in zip(wins, wins[1:]):
        assert a.end - b.start == O  # consecutive windows overlap by exactly O frames
        assert b.start > a.start
    assert all(w.length <= W for w in wins)
    assert all(w.length > O for w in wins[1:])  # every later window brings new frames
    assert all(b.start >= a.end for a, b in zip(wins, wins[2:]))  # no frame in three windows


def test_bad_plans_are_refused():
    with pytest.raises(MMTalkerError):
        plan_windows(10, 10, 5)  # overlap must be under half the window
    with pytest.raises(MMTalkerError):
        plan_windows(0, 10, 2)


def test_the_overlap_is_checked_in_frames_not_only_in_seconds():
    assert frames_for_window(1.0, 0.45, 30.0) == (30, 14)
    with pytest.raises(MMTalkerError, match=r"overlap_s: 0.49 s is 15 frames at 30 fps: it must be under half the window \(1 s, 30 frames\)"):
        frames_for_window(1.0, 0.49, 30.0)  # under half in seconds, exactly half in frames


@pytest.mark.parametrize("fps", [30.0, 29.97, 60.0])
def test_window_audio_starts_on_its_first_frames_sample_at_any_rate(fps):
    """Where frame starts fall between samples (533⅓ samples a frame at 30 fps), each window's audio still starts at
    its first frame's time rounded to a sample, and runs to its last frame's end: no drift over a long clip."""
    from fractions import Fraction

    seconds = 125.0
    ramp = np.arange(int(seconds * SAMPLE_RATE), dtype=np.float32)  # each sample holds its own index
    T = int(seconds * fps)
    W, O = frames_for_window(20.0, 3.0, fps)
    exact = Fraction(fps).limit_denominator(1001)
    for win in plan_windows(T, W, O):
        seg = window_audio(ramp, win, fps)
        first, last = (round(f * SAMPLE_RATE / exact) for f in (win.start, win.end))
        assert seg[0] == first and len(seg) == last - first
        assert np.all(np.diff(seg) == 1)  # contiguous samples


def test_fade_in_is_a_raised_cosine_whose_mirror_sums_to_one():
    for n in (1, 2, 7, 75):
        w = fade_in(n).astype(np.float64)
        naive = [0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / n) for i in range(n)]
        assert_close(w, naive, atol=1e-7, what="fade_in")
        assert_close(w + w[::-1], np.ones(n), atol=1e-6, what="fade_in + mirror")
        assert np.all(np.diff(w) > 0) and 0 < w[0] and w[-1] < 1


@pytest.mark.parametrize("T, W, O", [(1, 10, 2), (37, 10, 3), (100, 30, 7), (61, 30, 14)])
def test_crossfade_weights_sum_to_one_on_every_frame(T, W, O):
    wins = plan_windows(T, W, O)
    total = np.zeros(T)
    for win, w in zip(wins, window_weights(wins, O)):
        assert w.shape == (win.length,) and np.all(w >= 0) and np.all(w <= 1)
        total[win.start : win.end] += w
    assert_close(total, np.ones(T), atol=1e-6, what="sum of window weights")


def _local_frames(seg: np.ndarray, n: int) -> np.ndarray:
    """A 'model' whose frame t depends only on the audio of frame t: mean and RMS of its 640 samples."""
    seg = np.pad(seg, (0, max(0, n * HOP - len(seg))))[: n * HOP].reshape(n, HOP)
    return np.stack([seg.mean(1), np.sqrt((seg**2).mean(1)), np.arange(n) * 0 + 1.0], 1)[:, :, None].repeat(3, 2)


def test_windowed_equals_full_run_for_a_local_model():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(int(13.3 * SAMPLE_RATE)).astype(np.float32)
    T = round(13.3 * FPS)
    full = _local_frames(audio, T)
    windowed = run_windowed(audio, FPS, T, _local_frames, window_s=4.0, overlap_s=1.0)
    assert windowed.shape == full.shape
    assert_close(windowed, full, atol=1e-5, what="windowed vs full")


def test_blocks_match_a_naive_weighted_sum_of_windows():
    """Windows that disagree (each adds its own offset) are blended exactly as the weights say."""
    audio = np.random.default_rng(1).standard_normal(int(9.1 * SAMPLE_RATE)).astype(np.float32)
    T, W, O = round(9.1 * FPS), 50, 10
    calls = []

    def frames_fn(seg, n):
        calls.append(n)
        return _local_frames(seg, n) + 10.0 * len(calls)

    got = run_windowed(audio, FPS, T, frames_fn, window_s=W / FPS, overlap_s=O / FPS)
    wins = plan_windows(T, W, O)
    naive = np.zeros((T, 3, 3))
    for k, (win, w) in enumerate(zip(wins, window_weights(wins, O))):
        seg = audio[win.start * HOP : win.end * HOP]
        naive[win.start : win.end] += w[:, None, None] * (_local_frames(seg, win.length) + 10.0 * (k + 1))
    assert calls == [w.length for w in wins]
    assert_close(got, naive, atol=1e-4, what="blocks vs naive blend")
    starts = [s for s, _ in iter_windowed(audio, FPS, T, frames_fn, window_s=W / FPS, overlap_s=O / FPS)]
    assert starts == [w.start for w in wins]  # blocks come in order, one per window


def test_no_seam_on_the_21s_fixture(fixtures_dir):
    """Velocity at the window seams is no larger than elsewhere (random model, Whisper features)."""
    from mmtalker.inference.api import MMTalker
    from test_api import tiny_model

    audio = load_audio(fixtures_dir / "audio" / "selftalk_test_16k_21s.wav")
    talker = MMTalker.from_model(tiny_model(seed=5, encoder="whisper-tiny.en"))
    window_s, overlap_s = 8.0, 2.0
    anim = talker.animate(audio, window_s=window_s, overlap_s=overlap_s)
    assert anim.shape[0] == round(len(audio) / SAMPLE_RATE * talker.fps)
    speed = np.linalg.norm(np.diff(anim, axis=0), axis=-1).mean(1)  # (T-1,) mean vertex speed per frame step
    wins = plan_windows(len(anim), int(window_s * talker.fps), int(overlap_s * talker.fps))
    assert len(wins) >= 3
    seam = np.zeros(len(speed), bool)
    for a, b in zip(wins, wins[1:]):
        seam[b.start - 1 : a.end] = True  # the crossfades and the steps into and out of them
    assert speed[seam].max() <= speed[~seam].max()
