"""Audio encoders: Whisper against transformers' WhisperEncoder, log-mel, local HF models, and
features_at_fps against a naive loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.audio.ct2 import load_ct2
from mmtalker.audio.encoders import build_audio_encoder, features_at_fps
from mmtalker.audio.io import SAMPLE_RATE, load_audio
from mmtalker.audio.whisper import default_model_path
from mmtalker.errors import MMTalkerError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def whisper():
    return build_audio_encoder("whisper-tiny.en")


@pytest.fixture(scope="module")
def clip(fixtures_dir) -> np.ndarray:
    return load_audio(fixtures_dir / "audio" / "voca_test_sentence_22k.wav")


def _hf_whisper_encoder() -> torch.nn.Module:
    """transformers' WhisperEncoder filled from the ct2 arrays by hand (an independent implementation)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = transformers.WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, num_mel_bins=80,
        max_source_positions=1500,
    )
    ct2 = load_ct2(default_model_path(), "encoder/")
    arr = {k[len("encoder/"):]: torch.from_numpy(np.asarray(v)) for k, v in ct2.items()}
    sd = {
        "conv1.weight": arr["conv1/weight"], "conv1.bias": arr["conv1/bias"],
        "conv2.weight": arr["conv2/weight"], "conv2.bias": arr["conv2/bias"],
        "embed_positions.weight": arr["position_encodings/encodings"],
        "layer_norm.weight": arr["layer_norm/gamma"], "layer_norm.bias": arr["layer_norm/beta"],
    }
    for i in range(4):
        p, c = f"layers.{i}.", f"layer_{i}/"
        w = arr[c + "self_attention/linear_0/weight"].split(384)
        b = arr[c + "self_attention/linear_0/bias"].split(384)
        for j, name in enumerate("qkv"):
            sd[f"{p}self_attn.{name}_proj.weight"] = w[j]
            if name != "k":  # HF's k_proj has no bias; ct2 stores zeros there
                sd[f"{p}self_attn.{name}_proj.bias"] = b[j]
        pairs = {
            "self_attn.out_proj": "self_attention/linear_1", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1",
        }
        for hf, ct in pairs.items():
            sd[f"{p}{hf}.weight"], sd[f"{p}{hf}.bias"] = arr[f"{c}{ct}/weight"], arr[f"{c}{ct}/bias"]
        for hf, ct in {"self_attn_layer_norm": "self_attention/layer_norm", "final_layer_norm": "ffn/layer_norm"}.items():
            sd[f"{p}{hf}.weight"], sd[f"{p}{hf}.bias"] = arr[f"{c}{ct}/gamma"], arr[f"{c}{ct}/beta"]
    model = WhisperEncoder(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def test_whisper_matches_transformers_on_padded_30s(whisper, clip):
    padded = np.zeros(30 * SAMPLE_RATE, np.float32)
    padded[: clip.size] = clip
    audio = torch.from_numpy(padded)[None]
    mel = whisper.mel(audio)
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        ref = _hf_whisper_encoder()(mel, output_hidden_states=True)
    ours = whisper.hidden_states(audio)
    assert ours.shape == (1, 5, 1500, 384)
    assert_close(whisper(audio), ref.last_hidden_state, atol=1e-4, what="last hidden state")
    for i, state in enumerate(ref.hidden_states):
        assert_close(ours[:, i], state, atol=1e-4, what=f"hidden state {i}")


def test_whisper_short_clip_without_padding(whisper, clip):
    audio = torch.from_numpy(clip)[None]
    feats = whisper(audio)
    assert (whisper.dim, whisper.rate) == (384, 50.0)
    assert feats.shape == (1, whisper.num_frames_for(clip.size), 384)
    assert feats.shape[1] == math.ceil((clip.size // 160) / 2)
    # cutting the position table changes the features a little, not their meaning (their correlation was 0.967 when measured)
    padded = torch.zeros(1, 30 * SAMPLE_RATE)
    padded[0, : clip.size] = audio[0]
    full = whisper(padded)[:, : feats.shape[1]]
    assert np.corrcoef(feats.flatten().numpy(), full.flatten().numpy())[0, 1] > 0.95


@pytest.mark.parametrize("n", [400, 481, 1600, 1759, 16000 + 160 * 3 + 5])
def test_whisper_num_frames(whisper, n):
    assert whisper(torch.zeros(2, n)).shape == (2, whisper.num_frames_for(n), 384)


def test_whisper_limits(whisper):
    with pytest.raises(MMTalkerError, match="at most 30 s"):
        whisper(torch.zeros(1, 30 * SAMPLE_RATE + 160))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        whisper(torch.zeros(SAMPLE_RATE))


def test_frozen_and_trainable(whisper):
    audio = torch.randn(1, 3200, requires_grad=True)
    assert not any(p.requires_grad for p in whisper.parameters())
    whisper.train()
    assert not whisper.encoder.training  # a frozen backbone stays in eval mode
    assert not whisper(audio).requires_grad
    whisper.eval()
    trainable = build_audio_encoder("whisper-tiny.en", trainable=True)
    trainable(audio).square().mean().backward()
    assert trainable.encoder.conv1.weight.grad is not None and trainable.encoder.conv1.weight.grad.abs().sum() > 0


def test_logmel_encoder():
    enc = build_audio_encoder("logmel")
    assert (enc.dim, enc.rate) == (80, 100.0)
    audio = torch.randn(2, 8000)
    assert_close(enc(audio), enc.mel(audio).transpose(1, 2), what="log-mel features")
    assert enc(audio).shape == (2, enc.num_frames_for(8000), 80)
    proj = build_audio_encoder("logmel", proj_dim=16)
    out = proj(audio)
    assert out.shape == (2, 50, 16) and proj.dim == 16
    out.sum().backward()
    assert proj.proj.weight.grad is not None
    assert proj.hidden_states(audio).shape == (2, 1, 50, 16)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(cfg).eval()
    folder = tmp_path_factory.mktemp("w2v")
    model.save_pretrained(folder)
    return folder, model


def test_hf_encoder_matches_model(tiny_wav2vec2):
    folder, model = tiny_wav2vec2
    enc = build_audio_encoder(f"hf:{folder}")
    assert (enc.dim, enc.rate, enc.num_layers) == (32, 50.0, 3)
    audio = torch.randn(2, 16000 + 321) * 0.1 + 0.05
    normed = (audio - audio.mean(1, keepdim=True)) / torch.sqrt(audio.var(1, unbiased=False, keepdim=True) + 1e-7)
    with torch.no_grad():
        ref = model(normed, output_hidden_states=True)
    out = enc(audio)
    n_expected = int(model._get_feat_extract_output_lengths(torch.tensor(audio.shape[1])))
    assert out.shape == (2, enc.num_frames_for(audio.shape[1]), 32) and out.shape[1] == n_expected
    assert_close(out, ref.last_hidden_state, atol=1e-5, what="wav2vec2 output")
    assert_close(enc.hidden_states(audio)[:, 0], ref.hidden_states[0], atol=1e-5, what="wav2vec2 layer 0")
    # normalisation can be switched off by the folder's preprocessor_config.json
    (folder / "preprocessor_config.json").write_text('{"do_normalize": false, "sampling_rate": 16000}')
    try:
        raw = build_audio_encoder(f"hf:{folder}")
        with torch.no_grad():
            assert_close(raw(audio), model(audio).last_hidden_state, atol=1e-5, what="unnormalised")
    finally:
        (folder / "preprocessor_config.json").unlink()


def test_hf_encoder_errors(tmp_path):
    with pytest.raises(MMTalkerError, match="no such folder"):
        build_audio_encoder(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(MMTalkerError, match="has no config.json"):
        build_audio_encoder(f"hf:{tmp_path}")
    bert = transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    bert.save_pretrained(tmp_path)
    with pytest.raises(MMTalkerError, match="holds a 'bert' model"):
        build_audio_encoder(f"hf:{tmp_path}")
    (tmp_path / "w2v").mkdir()
    transformers.Wav2Vec2Config(hidden_size=8, num_attention_heads=1).save_pretrained(tmp_path / "w2v")
    with pytest.raises(MMTalkerError, match="cannot load the model weights"):
        build_audio_encoder(f"hf:{tmp_path / 'w2v'}")
    with pytest.raises(MMTalkerError, match="unknown"):
        build_audio_encoder("mystery")


def _naive_features_at_fps(feats: np.ndarray, rate: float, fps: float, num_frames: int) -> np.ndarray:
    B, Ta, C = feats.shape
    out = np.zeros((B, num_frames, C))
    for t in range(num_frames):
        x = min(t / fps * rate, Ta - 1)
        lo = int(math.floor(x))
        hi = min(lo + 1, Ta - 1)
        out[:, t] = feats[:, lo] + (x - lo) * (feats[:, hi] - feats[:, lo])
    return out


@pytest.mark.parametrize(
    "rate,fps,seconds", [(50, 30, 2.0), (50, 25, 1.0), (100, 30, 0.5), (50, 60, 1.3), (50, 30, 1 / 30), (49.5, 29.97, 0.7)]
)
def test_features_at_fps_naive(rate, fps, seconds):
    rng = np.random.default_rng(1)
    Ta = max(1, round(seconds * rate))
    T = max(1, round(seconds * fps))
    feats = rng.standard_normal((2, Ta, 3))
    got = features_at_fps(torch.from_numpy(feats), rate, fps, T)
    assert_close(got, _naive_features_at_fps(feats, rate, fps, T), atol=1e-12, what=f"{rate}->{fps}")


def test_features_at_fps_ramp_and_gradient():
    rate, fps = 50.0, 30.0
    times = torch.arange(100, dtype=torch.float64)[None, :, None] / rate  # (1, Ta, 1): a feature = its own time
    out = features_at_fps(times, rate, fps, 59)
    assert_close(out[0, :, 0], np.arange(59) / fps, atol=1e-12, what="time ramp")  # linear data interpolates exactly
    feats = torch.randn(1, 100, 4, requires_grad=True)
    features_at_fps(feats, rate, fps, 60).sum().backward()
    assert feats.grad.abs().sum() > 0
    assert features_at_fps(feats, rate, fps, 0).shape == (1, 0, 4)


def test_features_at_fps_refuses_missing_audio():
    feats = torch.randn(1, 50, 2)  # 1 s at 50 Hz
    ok = features_at_fps(feats, 50, 30, 33)  # a bit past the end: the last frame is held
    assert_close(ok[0, -1], feats[0, -1], what="held frame")
    with pytest.raises(MMTalkerError, match="cover 1.000 s"):
        features_at_fps(feats, 50, 30, 60)  # 2 s of motion for 1 s of audio


@pytest.mark.parametrize("fps", [30.0, 25.0, 29.97, 60.0])
def test_features_at_fps_for_a_stretch_of_frames_from_a_tail_of_the_features(fps):
    """Streaming's call: frames [first, first + n) from features that start at ``offset``, as the whole call gives them."""
    feats = torch.randn(1, 200, 3)
    whole = features_at_fps(feats, 50.0, fps, int(200 / 50 * fps) - 2)
    for first in range(0, whole.shape[1] - 5, 3):
        offset = math.floor(first * (50.0 / fps))
        part = features_at_fps(feats[:, offset:], 50.0, fps, 5, first_frame=first, offset=offset)
        assert_close(part, whole[:, first : first + 5], atol=1e-6, what=f"frames {first}..{first + 5} at {fps} fps")
