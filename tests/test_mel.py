"""Whisper log-mel front end against transformers' WhisperFeatureExtractor and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.audio.io import SAMPLE_RATE, load_audio
from mmtalker.audio.mel import HOP_LENGTH, N_MELS, LogMel, hz_to_mel, mel_filters, mel_to_hz, num_mel_frames
from mmtalker.errors import MMTalkerError


@pytest.fixture(scope="module")
def extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor(feature_size=N_MELS)


def test_slaney_scale_hand_values():
    # linear part: 3 mel per 200 Hz; 1 kHz is mel 15; log part: 27 mel per factor 6.4
    assert_close(hz_to_mel(np.array([0.0, 200.0, 1000.0, 6400.0])), [0.0, 3.0, 15.0, 42.0])
    hz = np.array([0.0, 50.0, 999.0, 1000.0, 4321.0, 8000.0])
    assert_close(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)


def test_filters_match_transformers(extractor):
    ours = mel_filters()
    assert ours.shape == (N_MELS, 201)
    assert_close(ours, extractor.mel_filters.T, atol=1e-9, what="mel filters")
    # Slaney normalisation: each triangle has unit area over Hz (integrated on a fine frequency grid)
    n_fft = 1 << 16
    fine = mel_filters(n_fft=n_fft)
    assert_close(fine.sum(axis=1) * (SAMPLE_RATE / n_fft), np.ones(N_MELS), atol=1e-3, what="filter areas")


@pytest.mark.parametrize("seconds", [0.8, 3.0107])
def test_matches_whisper_feature_extractor(fixtures_dir, extractor, seconds):
    audio = load_audio(fixtures_dir / "audio" / "faceformer_test_44k.wav")[: int(seconds * SAMPLE_RATE)]
    ref = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]  # padded to 30 s
    ours = LogMel()(torch.from_numpy(audio))[0].numpy()
    T = num_mel_frames(audio.size)
    assert ours.shape == (N_MELS, T)
    # the extractor pads with zeros to 30 s; our last frame's window reaches past the clip's end
    # (reflect padding), so compare all frames but that one
    assert_close(ours[:, : T - 1], ref[:, : T - 1], atol=1e-4, what="log-mel")


def test_batch_equals_single_and_floor():
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((3, 4000)).astype(np.float32))
    audio[1] *= 0.01
    audio[2, 2000:] = 0.0  # digital silence: clamped to the clip's max - 8 (log10), i.e. 80 dB down
    mel = LogMel()
    batch = mel(audio)
    assert batch.shape == (3, N_MELS, 4000 // HOP_LENGTH)
    for i in range(3):
        assert_close(batch[i], mel(audio[i])[0], atol=1e-6, what=f"clip {i}")
    assert_close(batch[2].min(), batch[2].max() - 2.0, atol=1e-6)  # 8 in log10 is 2 after (x + 4) / 4


def test_too_short():
    with pytest.raises(MMTalkerError, match="at least 400"):
        LogMel()(torch.zeros(1, 399))
