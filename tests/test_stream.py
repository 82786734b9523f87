"""Streaming: chunks in, frames out in order, on time, with bounded memory; close to offline output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FIXTURES, assert_close
from mmtalker.audio.io import SAMPLE_RATE, load_audio
from mmtalker.errors import MMTalkerError
from mmtalker.inference.api import MMTalker
from mmtalker.inference.engine import PreparedFace
from mmtalker.inference.stream import StreamingAnimator, stream_array
from test_api import speechlike, tiny_model
from test_windows import FPS, _local_frames


class LocalEngine:
    """An engine whose frame t depends only on the audio of frame t, [t, t+1)/fps: half a frame of lookahead
    past its centre is enough for streaming to match offline exactly."""

    fps, min_samples, max_samples = FPS, 400, None

    def features(self, audio, num_frames):
        return torch.from_numpy(_local_frames(audio, num_frames)[None])

    def motion(self, face, features, last=None):
        return features if last is None else features[:, -last:]

    def decode(self, face, part):
        return part[0].numpy().astype(np.float32)


def _face():
    return PreparedFace(torch.tensor([0]), None, None, np.zeros((3, 3), np.float32), np.zeros((1, 3), np.int64))


@pytest.mark.parametrize("chunk_s, lookahead_s", [(0.1, 0.02), (0.16, 0.12), (0.5, 0.3), (0.013, 0.05)])
def test_frames_are_exact_in_order_and_on_time_for_a_local_engine(chunk_s, lookahead_s):
    audio = np.random.default_rng(0).standard_normal(int(6.37 * SAMPLE_RATE)).astype(np.float32)
    anim = StreamingAnimator(LocalEngine(), _face(), context_s=1.0, encoder_context_s=0.4, lookahead_s=lookahead_s)
    step = int(chunk_s * SAMPLE_RATE)
    blocks = []
    for s in range(0, len(audio), step):
        blocks.append(anim.push(audio[s : s + step]))
        heard = min(len(audio), s + step) / SAMPLE_RATE
        assert anim.emitted == 0 or (anim.emitted - 0.5) / FPS + lookahead_s <= heard + 1e-9  # none early
        assert anim.emitted >= int((heard - lookahead_s) * FPS - 0.5)  # and none held back longer than needed
        assert len(anim._buffer) <= (0.4 + lookahead_s + chunk_s) * SAMPLE_RATE + 2 * SAMPLE_RATE / FPS  # bounded
        assert anim._features is None or anim._features.shape[1] <= round(1.0 * FPS)  # the feature cache too
    blocks.append(anim.flush())
    streamed = np.concatenate(blocks)
    T = round(6.37 * FPS)
    assert streamed.shape[0] == T
    assert_close(streamed, _local_frames(audio, T), atol=1e-5, what="streamed vs offline")


def test_streamed_output_is_close_to_offline_away_from_the_start():
    """Real network (log-mel features): only the utterance-level context differs from the offline run."""
    talker = MMTalker.from_model(tiny_model(seed=4))
    audio = speechlike(7.0, seed=2)
    offline = talker.animate(audio)
    streamed = stream_array(talker.stream(context_s=2.0, lookahead_s=0.2), audio, chunk_s=0.16)
    assert streamed.shape == offline.shape
    rest = talker.template_mesh.vertices
    skip = int(2.0 * talker.fps)
    d_off, d_st = (offline - rest)[skip:], (streamed - rest)[skip:]
    assert np.corrcoef(d_off.ravel(), d_st.ravel())[0, 1] > 0.95
    moving_off = d_off - d_off.mean(0)
    moving_st = d_st - d_off.mean(0)
    assert np.corrcoef(moving_off.ravel(), moving_st.ravel())[0, 1] > 0.7


def test_whisper_stream_runs_on_real_speech(fixtures_dir):
    audio = load_audio(fixtures_dir / "audio" / "voca_test_sentence_22k.wav")
    talker = MMTalker.from_model(tiny_model(seed=4, encoder="whisper-tiny.en"))
    streamed = stream_array(talker.stream(style="alice"), audio, chunk_s=0.2)
    assert streamed.shape == (talker.num_frames_for(len(audio)), talker.num_vertices, 3)
    assert np.isfinite(streamed).all()


def test_whisper_runs_incrementally_unless_told_otherwise(fixtures_dir):
    audio = load_audio(fixtures_dir / "audio" / "voca_test_sentence_22k.wav")[: 16000 * 4]
    talker = MMTalker.from_model(tiny_model(seed=4, encoder="whisper-tiny.en"))
    offline = talker.animate(audio, style="alice")
    rest, skip = talker.template_mesh.vertices, int(2.0 * talker.fps)
    for incremental in (True, False):
        anim = talker.stream(style="alice", incremental=incremental)
        assert (anim._whisper is not None) == incremental
        streamed = stream_array(anim, audio, chunk_s=0.16)
        assert streamed.shape == offline.shape
        a, b = (offline - rest)[skip:].ravel(), (streamed - rest)[skip:].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.8
    # each push's time split by stage: one entry per push, the parts within the whole
    anim = talker.stream(style="alice")
    stream_array(anim, audio[: 16000 * 2], chunk_s=0.16)
    parts = np.array([anim.stage_seconds[k] for k in ("encoder", "model", "decode")])
    assert parts.shape == (3, len(anim.push_seconds)) and (parts >= 0).all()
    assert (parts.sum(0) <= np.array(anim.push_seconds) + 1e-9).all() and parts[1].max() > 0
    # a stream shorter than one STFT window still ends in its frames
    anim = talker.stream(style="alice")
    assert anim.push(audio[:200]).shape[0] == 0
    assert anim.flush().shape == (1, talker.num_vertices, 3)  # at least one frame, as offline


def test_bad_settings_and_chunks_are_refused():
    talker = MMTalker.from_model(tiny_model())
    for bad, name in (({"context_s": 0}, "context_s"), ({"encoder_context_s": -1}, "encoder_context_s"),
                      ({"lookahead_s": float("nan")}, "lookahead_s")):
        with pytest.raises(MMTalkerError, match=name):
            talker.stream(**bad)
    with pytest.raises(MMTalkerError, match="NaN"):
        talker.stream().push(np.full(100, np.nan, np.float32))


def _stream_cli(argv):
    import argparse

    from mmtalker.commands import stream as stream_cmd

    parser = argparse.ArgumentParser()
    stream_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["stream", *argv])
    return args.func(args)


def test_stream_command_from_a_file_and_from_stdin(tmp_path, monkeypatch, capsys):
    import io

    from test_api import tiny_checkpoint

    ck = tiny_checkpoint(tmp_path / "ck", seed=3)
    audio = speechlike(2.0, seed=5)
    import soundfile as sf

    sf.write(tmp_path / "a.wav", audio, SAMPLE_RATE, subtype="PCM_16")
    assert _stream_cli(["--checkpoint", str(ck), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "f.npz")]) == 0
    from_file = np.load(tmp_path / "f.npz")
    assert from_file["vertices"].shape == (50, 64, 3) and float(from_file["fps"]) == 25.0
    out = capsys.readouterr().out
    assert "compute per 160 ms chunk" in out and "by stage, over the chunks that ran it: encoder" in out and "decode" in out
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    monkeypatch.setattr("sys.stdin", type("Stdin", (), {"buffer": io.BytesIO(pcm)})())
    assert _stream_cli(["--checkpoint", str(ck), "--audio", "-", "--out", str(tmp_path / "s.npy")]) == 0
    assert_close(np.load(tmp_path / "s.npy"), from_file["vertices"], atol=1e-4, what="stdin vs file")
    with pytest.raises(MMTalkerError, match="already exists"):
        _stream_cli(["--checkpoint", str(ck), "--audio", "-", "--out", str(tmp_path / "s.npy")])


def test_an_untagged_mp3_on_stdin_is_named_and_pcm_is_not_taken_for_one(tmp_path):
    """An mp3 without an ID3 tag starts with a frame header, not a magic word: piped to `stream --audio -` it was
    read as raw PCM (noise-driven motion, no error)."""
    import soundfile as sf

    from mmtalker.audio.io import untagged_mp3

    rate = 22050
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    sf.write(tmp_path / "a.mp3", tone, rate, format="MP3")
    raw = (tmp_path / "a.mp3").read_bytes()[:5120]
    assert raw[:3] != b"ID3" and untagged_mp3(raw)
    pcm = [np.full(2560, -1, "<i2"), np.full(2560, -1025, "<i2"), (tone[:2560] * 32767).astype("<i2"),
           np.random.default_rng(0).integers(-2**15, 2**15, 2560).astype("<i2")]
    assert not any(untagged_mp3(p.tobytes()) for p in pcm)
    # speech starting anywhere: one frame header's look is common (4360 of 1.6M starts of the fixtures), the chain
    # of frame lengths never (scanned at gains 1 and 3); here a fixture's starts that look like a header
    from mmtalker.audio.io import load_audio

    wavs = sorted((FIXTURES / "audio").glob("*.wav"))
    if wavs:
        speech = (np.clip(load_audio(wavs[0]) * 3, -1, 1) * 32767).astype("<i2").tobytes()
        starts = [i for i in range(0, len(speech) - 4096, 2) if speech[i] == 0xFF and speech[i + 1] & 0xE0 == 0xE0]
        assert starts and not any(untagged_mp3(speech[i:i + 4096]) for i in starts)

