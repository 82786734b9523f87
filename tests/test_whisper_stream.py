"""Whisper encoded incrementally for streaming: the same numbers as offline where nothing is cut, close elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.audio.encoders import build_audio_encoder
from mmtalker.audio.io import load_audio
from mmtalker.audio.whisper_stream import IncrementalWhisper, supports
from test_api import speechlike


@pytest.fixture(scope="module")
def whisper():
    return build_audio_encoder("whisper-tiny.en@3+1+2").eval()


@pytest.fixture(scope="module")
def speech(fixtures_dir):
    return load_audio(fixtures_dir / "audio" / "voca_test_sentence_22k.wav")[: 16000 * 4]


def offline(encoder, audio):
    with torch.no_grad():
        return encoder(torch.from_numpy(audio)[None])[0]


def pushed(encoder, audio, chunk, **kw):
    enc = IncrementalWhisper(encoder, **kw)
    for s in range(0, len(audio), chunk):
        enc.push(audio[s : s + chunk])
    return enc


def test_which_encoders_it_supports(whisper):
    assert supports(whisper) and supports(build_audio_encoder("whisper-tiny.en"))
    assert supports(build_audio_encoder("whisper-tiny.en@2"))
    assert not supports(build_audio_encoder("logmel"))
    with pytest.raises(ValueError, match="not a Whisper encoder"):
        IncrementalWhisper(build_audio_encoder("logmel"))


@pytest.mark.parametrize("spec", ["whisper-tiny.en@3+1+2", "whisper-tiny.en"])
def test_one_push_is_the_offline_encoding(spec, speech):
    """All audio at once: the same stem, positions, attention and hidden states as the encoder's forward."""
    encoder = build_audio_encoder(spec).eval()
    enc = pushed(encoder, speech, len(speech))
    ref = offline(encoder, speech)
    assert enc.num_frames == ref.shape[0] and enc.dim == ref.shape[1]
    assert_close(enc.states(0, enc.num_frames).numpy(), ref.numpy(), atol=2e-4, what="one push vs offline")


def test_chunks_with_every_frame_provisional_are_the_offline_encoding(whisper, speech):
    """Nothing settles: every push recomputes every frame from the start, so the chunking itself adds no error."""
    enc = pushed(whisper, speech, 2560, provisional=10_000)
    assert_close(enc.states(0, enc.num_frames).numpy(), offline(whisper, speech).numpy(), atol=2e-4, what="chunked")


def test_settled_frames_stay_close_to_offline(whisper, speech):
    enc = pushed(whisper, speech, 2560)
    ref = offline(whisper, speech).numpy()
    got = enc.states(0, enc.num_frames).numpy()
    assert enc.final == enc.num_frames - enc.provisional
    per_frame = [np.corrcoef(a, b)[0, 1] for a, b in zip(got, ref)]
    assert np.median(per_frame) > 0.95, np.median(per_frame)
    # a frame, once settled, never changes
    before = enc.states(0, enc.final).clone()
    enc.push(speech[:2560])
    assert torch.equal(enc.states(0, before.shape[0]), before)


def test_sessions_restart_with_their_context_and_bounded_memory(whisper):
    audio = speechlike(7.0, seed=1)
    enc = pushed(whisper, audio, 1600, session_s=2.0, restart_s=0.5)
    assert enc.num_frames == (len(audio) // 160 + 1) // 2
    assert 0 < enc.session_start and enc.num_frames - enc.session_start <= enc.session_frames
    with pytest.raises(IndexError, match="outside"):
        enc.states(0, 5)
    tail = enc.states(enc.num_frames - 10, enc.num_frames).numpy()
    assert np.isfinite(tail).all()
    # the audio kept is what a restart would re-encode, not the whole stream
    assert len(enc._audio) < (0.5 + 0.3) * 16000
    # a restart that would not fit in a session is refused when the encoder is built
    with pytest.raises(ValueError, match="well under session_s"):
        IncrementalWhisper(whisper, session_s=2.0, restart_s=1.5)


def test_too_little_audio_gives_no_frames_yet(whisper):
    enc = IncrementalWhisper(whisper)
    enc.push(np.zeros(300, np.float32))
    assert enc.num_frames == 0
    enc.push(np.zeros(200, np.float32))
    assert enc.num_frames == 2


def test_a_new_session_forgets_an_old_loud_burst(whisper):
    """The 80 dB floor follows the session's own audio: a burst 3 s back does not mute the quiet speech after it."""
    quiet = speechlike(5.0, seed=3) * 0.01
    loud = quiet.copy()
    loud[:1600] = np.random.default_rng(0).standard_normal(1600).astype(np.float32)  # 0.1 s of loud noise at the start
    a = pushed(whisper, quiet, 1600, session_s=2.0, restart_s=0.5)
    b = pushed(whisper, loud, 1600, session_s=2.0, restart_s=0.5)
    assert a.session_start == b.session_start > 50  # both restarted after the burst
    assert b._peak == pytest.approx(a._peak)


def test_a_layer_with_a_cache_attends_to_the_frames_before_its_piece():
    """EncoderLayer(x, cache, at): one piece is the plain layer; of two pieces the second sees all frames, so its
    output is the plain layer's, the first sees only its own; the row-major copy computes the same."""
    from mmtalker.audio.whisper import EncoderLayer, KVCache, WhisperEncoderConfig
    from mmtalker.audio.whisper_stream import RowMajorLinear, _rows_first

    cfg = WhisperEncoderConfig(d_model=16, n_heads=2, ffn_dim=32)
    torch.manual_seed(0)
    layer = EncoderLayer(cfg).eval()
    x = torch.randn(1, 10, 16)
    with torch.no_grad():
        whole = layer(x)
        assert_close(layer(x, KVCache(2, 8, 12), 0).numpy(), whole.numpy(), atol=1e-5, what="one piece")
        cache = KVCache(2, 8, 12)
        first, second = layer(x[:, :6], cache, 0), layer(x[:, 6:], cache, 6)
        assert_close(second.numpy(), whole[:, 6:].numpy(), atol=1e-5, what="second piece")
        assert not torch.allclose(first, whole[:, :6], atol=1e-3)  # it could not see frames 6..9
        fast = _rows_first(layer)
        assert sum(isinstance(m, RowMajorLinear) for m in fast.modules()) == 4
        assert not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
        assert_close(fast(x, KVCache(2, 8, 12), 0).numpy(), whole.numpy(), atol=1e-5, what="row-major copy")
        assert any(isinstance(m, torch.nn.Linear) for m in layer.modules())  # the original is left as it was
