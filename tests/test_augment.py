"""Speech augmentation: exact gain, measured SNR, causal same-length reverb, stretch bookkeeping, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.audio.augment import (
    AugmentConfig,
    add_noise,
    apply_gain,
    augment,
    change_speed,
    make_noise,
    reverberate,
    room_impulse_response,
)
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError


@pytest.fixture(scope="module")
def speechlike() -> np.ndarray:
    """1.5 s: a 220 Hz tone with harmonics, amplitude-modulated at 4 Hz, silent first and last 0.2 s."""
    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in (1, 2, 3)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    x[(t < 0.2) | (t > 1.3)] = 0.0
    return (0.3 * x).astype(np.float32)


@pytest.mark.parametrize("gain_db", [-25.0, -6.0, 0.0, 5.0])
def test_gain_exact(speechlike, gain_db):
    out = apply_gain(speechlike, gain_db)
    assert_close(out, speechlike * 10 ** (gain_db / 20), atol=1e-7)
    loud = np.abs(speechlike) > 1e-3
    assert_close(20 * np.log10(np.abs(out[loud]) / np.abs(speechlike[loud])), np.full(loud.sum(), gain_db), atol=1e-4)


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [10.0, 20.0, 30.0])
def test_snr_as_requested(speechlike, color, snr_db):
    noisy = add_noise(speechlike, snr_db, np.random.default_rng(3), color)
    noise = noisy.astype(np.float64) - speechlike
    measured = 10 * np.log10(np.mean(speechlike.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(measured - snr_db) < 0.01
    assert noisy.dtype == np.float32 and noisy.shape == speechlike.shape


def test_pink_noise_spectrum():
    noise = make_noise(1 << 16, "pink", np.random.default_rng(0))
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.arange(power.size)
    low, high = power[(f > 100) & (f < 200)].mean(), power[(f > 10000) & (f < 20000)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(10 * np.log10(100), abs=1.5)  # 1/f: 20 dB per 100x frequency
    white = np.abs(np.fft.rfft(make_noise(1 << 16, "white", np.random.default_rng(0)))) ** 2
    assert abs(10 * np.log10(white[(f > 100) & (f < 200)].mean() / white[(f > 10000) & (f < 20000)].mean())) < 1.5
    with pytest.raises(ValueError, match="unknown noise colour"):
        make_noise(10, "brown", np.random.default_rng(0))


def test_room_response_decay():
    rt60 = 0.4
    ir = room_impulse_response(rt60, np.random.default_rng(1), drr_db=10.0)
    assert ir.size == round(rt60 * SAMPLE_RATE)
    assert_close(np.sum(ir**2), 1.0, atol=1e-9)
    assert_close(10 * np.log10(ir[0] ** 2 / np.sum(ir[1:] ** 2)), 10.0, atol=1e-6)
    # energy in the first and last 50 ms of the tail: 60 dB per RT60 -> 60 * 0.35 / 0.4 = 52.5 dB apart
    tail = ir[1:] ** 2
    w = int(0.05 * SAMPLE_RATE)
    assert 10 * np.log10(tail[:w].sum() / tail[-w:].sum()) == pytest.approx(52.5, abs=3.0)


def test_reverb_keeps_length_and_is_causal(speechlike):
    out = reverberate(speechlike, 0.5, np.random.default_rng(4))
    assert out.shape == speechlike.shape
    assert np.abs(out[: int(0.2 * SAMPLE_RATE)]).max() < 1e-6  # silence before the speech stays silent (FFT round-off)
    assert np.abs(out[int(1.3 * SAMPLE_RATE) :]).max() > 1e-3  # the room rings on after it
    changed = speechlike.copy()
    k = 12000
    changed[k:] = 0.0
    out2 = reverberate(changed, 0.5, np.random.default_rng(4))
    assert_close(out2[:k], out[:k], atol=1e-6, what="output before the change")
    impulse = np.zeros(4000, np.float32)
    impulse[1000] = 1.0
    ir = room_impulse_response(0.2, np.random.default_rng(9))
    response = reverberate(impulse, 0.2, np.random.default_rng(9))
    assert_close(response[1000:], ir[:3000], atol=1e-6, what="impulse response")  # naive: a shifted copy of the IR
    assert np.abs(response[:1000]).max() < 1e-6


@pytest.mark.parametrize("stretch", [0.9, 0.95, 1.0, 1.0333, 1.1])
def test_speed_change_factor(speechlike, stretch):
    out, factor = change_speed(speechlike, stretch)
    assert abs(factor - stretch) < 1 / SAMPLE_RATE
    assert abs(out.size - speechlike.size * factor) <= 1
    # the 220 Hz fundamental moves to 220 / factor Hz (tempo and pitch change together)
    spec = np.abs(np.fft.rfft(out * np.hanning(out.size), 1 << 18))
    peak_hz = np.argmax(spec[: (1 << 18) * 400 // SAMPLE_RATE]) * SAMPLE_RATE / (1 << 18)
    assert peak_hz == pytest.approx(220 / factor, abs=1.0)


def test_augment_deterministic_and_bookkept(speechlike):
    cfg = AugmentConfig(speed_prob=1.0, reverb_prob=1.0, noise_prob=1.0, gain_prob=1.0)
    a = augment(speechlike, np.random.default_rng(7), cfg)
    b = augment(speechlike, np.random.default_rng(7), cfg)
    c = augment(speechlike, np.random.default_rng(8), cfg)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.applied == b.applied and a.applied != c.applied
    assert set(a.applied) == {"speed", "rt60", "drr_db", "snr_db", "noise", "gain_db"}
    assert a.stretch == a.applied["speed"] and abs(a.audio.size - speechlike.size * a.stretch) <= 1
    assert 0.15 <= a.applied["rt60"] <= 0.7 and 10 <= a.applied["snr_db"] <= 30 and -25 <= a.applied["gain_db"] <= 5


def test_augment_off_is_identity(speechlike):
    off = AugmentConfig(speed_prob=0, reverb_prob=0, noise_prob=0, gain_prob=0)
    out = augment(speechlike, np.random.default_rng(0), off)
    np.testing.assert_array_equal(out.audio, speechlike)
    assert out.stretch == 1.0 and out.applied == {}
    gain_only = augment(speechlike, np.random.default_rng(0), AugmentConfig(speed_prob=0, reverb_prob=0, noise_prob=0))
    assert_close(gain_only.audio, apply_gain(speechlike, gain_only.applied["gain_db"]), atol=0)


def test_config_checked():
    with pytest.raises(MMTalkerError, match="augment.noise_prob"):
        AugmentConfig(noise_prob=1.5)
    with pytest.raises(MMTalkerError, match="augment.gain_db_range"):
        AugmentConfig(gain_db_range=(5.0, -25.0))
    with pytest.raises(MMTalkerError, match="noise_colors"):
        AugmentConfig(noise_colors=("blue",))
