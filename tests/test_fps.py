"""fps.resample_frames: the one frame-rate conversion, against a naive loop and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close

from mmtalker.data.fps import num_frames, resample_frames


def _naive(x: np.ndarray, src: float, dst: float) -> np.ndarray:
    """Frame by frame: the source at time k/dst, linearly between its neighbours, held past the end."""
    length = x.shape[0]
    n = 0 if length == 0 else max(1, int(math.floor(length * dst / src + 0.5)))
    out = []
    for k in range(n):
        t = k * src / dst
        i = min(int(math.floor(t)), length - 1)
        j = min(i + 1, length - 1)
        w = min(max(t - i, 0.0), 1.0)
        out.append((1 - w) * x[i].astype(np.float64) + w * x[j].astype(np.float64))
    return np.array(out).reshape((n,) + x.shape[1:])


@pytest.mark.parametrize("src,dst", [(60, 30), (30, 60), (60, 25), (25, 30), (50, 30), (30, 29.97), (24, 60)])
@pytest.mark.parametrize("length", [1, 2, 7, 40])
def test_matches_naive_loop(src, dst, length):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(length, 5, 3)).astype(np.float32)
    out = resample_frames(x, src, dst)
    assert out.dtype == np.float32
    assert out.shape[0] == num_frames(length, src, dst)
    assert_close(out, _naive(x, src, dst), atol=1e-6, what=f"{src}->{dst} T={length}")
    assert_close(out[0], x[0], atol=0, rtol=0, what="first frame kept")


def test_identity_when_rates_equal():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert resample_frames(x, 30, 30) is x


def test_60_to_30_on_linear_ramp_is_exact():
    t = np.arange(121) / 60.0  # seconds
    ramp = np.stack([t, 2 * t - 1, -3 * t], axis=1)[:, None, :].astype(np.float32)  # (121, 1, 3)
    out = resample_frames(ramp, 60, 30)
    assert out.shape == (61, 1, 3)
    np.testing.assert_array_equal(out, ramp[::2])


def test_linear_ramp_any_ratio_is_the_ramp_at_output_times():
    src, dst = 25.0, 60.0
    t = np.arange(50) / src
    out = resample_frames(t[:, None] * 4.0 + 1.0, src, dst)
    t_out = np.minimum(np.arange(out.shape[0]) / dst, t[-1])  # held past the last frame
    assert_close(out[:, 0], t_out * 4.0 + 1.0, atol=1e-12, what="ramp")


def test_lengths_round_half_up_and_keep_one_frame():
    assert num_frames(5, 60, 30) == 3  # 2.5 -> 3, frames 0, 2, 4
    assert num_frames(4, 60, 30) == 2
    assert num_frames(1, 60, 25) == 1
    assert num_frames(0, 60, 30) == 0
    assert resample_frames(np.zeros((0, 4, 3), np.float32), 60, 30).shape == (0, 4, 3)


def test_memmap_input_reads_rows(tmp_path):
    x = np.random.default_rng(0).normal(size=(9, 4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(resample_frames(mm, 60, 30), x[::2])


def test_integer_input_gives_float64():
    out = resample_frames(np.array([0, 10, 20, 30]), 30, 60)
    assert out.dtype == np.float64
    assert_close(out, [0, 5, 10, 15, 20, 25, 30, 30], what="upsampled ints")


@pytest.mark.parametrize("src,dst", [(0, 30), (30, -1), (float("nan"), 30), (30, float("inf"))])
def test_bad_rates_raise(src, dst):
    with pytest.raises(ValueError):
        resample_frames(np.zeros((3, 2)), src, dst)
