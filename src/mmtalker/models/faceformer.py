"""FaceFormer (Fan et al., CVPR 2022), written from the paper's description.

1. audio       — the shared speech encoder's features at the mesh fps, projected to ``d_model``;
2. style       — a learned embedding per training subject (one-hot × matrix; the mean for unseen subjects);
3. motion in   — frame t's input is the previous frame's offsets projected to ``d_model`` plus the style
   (frame 0's input is the style alone), plus the **periodic positional encoding** (a sinusoid of
   t mod p: positions repeat with period p, so no length is ever out of range);
4. decoder     — transformer decoder layers: self-attention under the **biased causal mask** (frame i sees
   frames j ≤ i with an ALiBi-style penalty −m_h·⌊(i−j)/p⌋ per head h, constant within a period), then
   cross-attention under the **alignment mask** (frame i sees only its own audio frame(s)), then an MLP;
5. motion out  — a linear layer to the V×3 offsets.

Training is teacher-forced (the inputs are the true previous frames); inference is autoregressive, one
frame at a time with cached keys and values, and has no maximum length: masks and encodings are made for
whatever T comes. Shapes: ``B`` clips, ``T`` frames, ``D`` width, ``H`` heads, ``V`` vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmtalker.audio.finetune import check_audio_finetune
from mmtalker.models.peer_base import DenseVertexModel, check_fps, check_own_inputs


@dataclass
class FaceFormerConfig:
    """Network sizes; saved as JSON beside the weights."""

    subjects: list[str] = field(default_factory=list)
    audio_encoder: str = "whisper-tiny.en"
    audio_dim: int = 384
    fps: float = 30.0
    d_model: int = 64  # the paper used 64 on VOCASET
    heads: int = 4
    layers: int = 1  # the paper's decoder had one layer
    ffn: int = 128
    period: int = 30  # p, in frames (the paper: 30 at 30 fps, 25 at 25 fps)
    audio_per_frame: int = 1  # audio feature frames aligned with each motion frame (1: features at the mesh fps)
    dropout: float = 0.0
    own_inputs: float = 0.0  # training: share of input frames replaced by the model's own predictions (0: teacher forcing)
    own_input_passes: int = 1  # training: gradient-free passes that make those predictions, each fed the last one's
    audio_finetune: int = 0  # N > 0: Whisper's blocks N … trained with the model (mmtalker.audio.finetune); 0: frozen
    audio_init: str | None = None  # with audio_finetune: a file of tuned blocks to start from (hearing_pretrain.py); unset: Whisper's own

    def check(self, where: str) -> None:
        """Called by the strict config builder (``mmtalker.train.config.build_dataclass``)."""
        check_fps(self.fps, where)
        check_own_inputs(self, where)
        check_audio_finetune(self, where)


# ---------------------------------------------------------------------------------------------------- masks
def periodic_positional_encoding(T: int, dim: int, period: int, first: int = 0) -> torch.Tensor:
    """(T − first, dim) sinusoidal encoding of positions t = first..T−1 taken mod ``period`` (sin on even,
    cos on odd channels)."""
    pos = (torch.arange(first, T) % period).float().unsqueeze(1)  # (T', 1)
    freq = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))  # (dim/2,)
    pe = torch.zeros(pos.shape[0], dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def alibi_slopes(heads: int) -> torch.Tensor:
    """(H,) head slopes m_h = 2^(−8(h+1)/H), the geometric sequence of ALiBi (Press et al. 2022)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


def biased_causal_mask(T: int, heads: int, period: int, first: int = 0) -> torch.Tensor:
    """(H, T − first, T) additive self-attention bias of query frames i = first..T−1 over key frames j < T:
    −m_h·⌊(i−j)/period⌋ for j ≤ i, −inf for j > i (the future)."""
    i = torch.arange(first, T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    steps = torch.div(i - j, period, rounding_mode="floor").float()  # (T, T)
    bias = -alibi_slopes(heads).view(-1, 1, 1) * steps
    return bias.masked_fill(j > i, float("-inf"))


def alignment_mask(T: int, S: int, audio_per_frame: int = 1, first: int = 0) -> torch.Tensor:
    """(T − first, S) additive cross-attention mask of frames i = first..T−1: frame i sees audio frames
    [i·r, (i+1)·r) (r = audio_per_frame); a frame whose aligned audio lies past S sees the last audio frame."""
    i = torch.arange(first, T).unsqueeze(1)
    j = torch.arange(S).unsqueeze(0)
    lo = torch.clamp(i * audio_per_frame, max=S - 1)
    allowed = (j >= lo) & (j < torch.clamp((i + 1) * audio_per_frame, min=lo + 1))
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


# --------------------------------------------------------------------------------------------------- layers
class Attention(nn.Module):
    """Multi-head attention with an additive bias; keys/values can be projected once and reused."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, Tk, D) -> k, v (B, H, Tk, D/H)."""
        B, Tk, D = x.shape
        k, v = self.kv(x).reshape(B, Tk, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, Tq, D) queries, k/v (B, H, Tk, D/H), bias broadcastable to (B, H, Tq, Tk) -> (B, Tq, D)."""
        B, Tq, D = x.shape
        q = self.q(x).reshape(B, Tq, self.heads, D // self.heads).transpose(1, 2)  # (B, H, Tq, D/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.out(y.transpose(1, 2).reshape(B, Tq, D))


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: x + SelfAttn(x; biased causal) ; x + CrossAttn(x, audio; alignment) ; x + MLP(x)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.cross_attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, audio_kv, self_bias, cross_bias, cache: list | None = None):
        """x (B, Tq, D); audio_kv: the cross-attention's (k, v) of the audio; biases (H or 1, Tq, Tk).
        With ``cache`` (a list, empty at the first step) the new frames' keys/values are appended to it and
        attention runs over all cached frames (incremental decoding)."""
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        x = x + self.drop(self.self_attn.attend(h, k, v, self_bias))
        x = x + self.drop(self.cross_attn.attend(self.norm2(x), *audio_kv, cross_bias))
        return x + self.drop(self.mlp(self.norm3(x)))


# ---------------------------------------------------------------------------------------------------- model
class MotionDecoder(nn.Module):
    """The autoregressive core shared with CodeTalker's stage 2: tokens of past frames + audio -> (B, T, D).

    ``forward`` decodes all frames at once from given inputs (teacher forcing); ``step`` decodes one frame
    from the previous one's input token with per-layer caches (the same function of the same inputs).
    """

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.config = config
        self.audio_proj = nn.Sequential(nn.LayerNorm(config.audio_dim), nn.Linear(config.audio_dim, d))
        self.layers = nn.ModuleList(DecoderLayer(d, config.heads, config.ffn, config.dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)

    def audio_keys(self, audio: torch.Tensor) -> list:
        """audio (B, S, C) -> per layer the cross-attention keys/values."""
        a = self.audio_proj(audio)
        return [layer.cross_attn.keys_values(a) for layer in self.layers]

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, D) inputs (style + past motion, no positions yet), audio (B, S, C) -> (B, T, D)."""
        T, c = tokens.shape[1], self.config
        x = tokens + periodic_positional_encoding(T, c.d_model, c.period).to(tokens)
        self_bias = biased_causal_mask(T, c.heads, c.period).to(tokens)
        cross_bias = alignment_mask(T, audio.shape[1], c.audio_per_frame).to(tokens)
        for layer, kv in zip(self.layers, self.audio_keys(audio)):
            x = layer(x, kv, self_bias, cross_bias)
        return self.norm(x)

    def step(self, token: torch.Tensor, t: int, audio_kv: list, caches: list, num_audio: int) -> torch.Tensor:
        """token (B, 1, D) input of frame t; caches: one list per layer -> output (B, 1, D) of frame t."""
        c = self.config
        x = token + periodic_positional_encoding(t + 1, c.d_model, c.period, first=t).to(token)
        self_bias = biased_causal_mask(t + 1, c.heads, c.period, first=t).to(token)  # (H, 1, t+1)
        cross_bias = alignment_mask(t + 1, num_audio, c.audio_per_frame, first=t).to(token)  # (1, S)
        for layer, kv, cache in zip(self.layers, audio_kv, caches):
            x = layer(x, kv, self_bias, cross_bias, cache)
        return self.norm(x)


class FaceFormer(DenseVertexModel):
    """Audio + style -> autoregressive transformer decoder -> per-frame offsets (motion units)."""

    def __init__(self, config: FaceFormerConfig, template, subject_templates=None, motion_scale: float = 1.0, faces=None):
        super().__init__(config, template, subject_templates, motion_scale, faces)
        d, n = config.d_model, self.num_vertices * 3
        self.style = nn.Linear(self.num_subjects, d, bias=False)  # one-hot × matrix = a style embedding
        self.motion_in = nn.Linear(n, d)
        self.decoder = MotionDecoder(config)
        self.motion_out = nn.Linear(d, n)
        nn.init.zeros_(self.motion_out.weight)  # start from "no motion"
        nn.init.zeros_(self.motion_out.bias)

    def inputs(self, previous: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """previous (B, T', V, 3) frames -> input tokens (B, T', D) = projection + style."""
        return self.motion_in(previous.flatten(2)) + style.unsqueeze(1)

    def forward(self, audio: torch.Tensor, subject: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
        """Teacher forcing: audio (B, T, C), subject (B,), target (B, T, V, 3) in motion units -> (B, T, V, 3)."""
        B, T = target.shape[:2]
        style = self.style(self.style_weights(subject))  # (B, D)
        tokens = torch.cat([style.unsqueeze(1), self.inputs(target[:, :-1], style)], dim=1)  # (B, T, D)
        h = self.decoder(tokens, audio)
        return self.motion_out(h).reshape(B, T, self.num_vertices, 3)

    def motion(self, audio: torch.Tensor, subject: torch.Tensor, mask=None) -> torch.Tensor:
        """Autoregressive decoding: audio (B, T, C), subject (B,) -> (B, T, V, 3) in motion units."""
        B, T = audio.shape[:2]
        style = self.style(self.style_weights(subject))  # (B, D)
        audio_kv = self.decoder.audio_keys(audio)
        caches = [[] for _ in self.decoder.layers]
        token = style.unsqueeze(1)  # frame 0 sees the style alone
        frames = []
        for t in range(T):
            h = self.decoder.step(token, t, audio_kv, caches, T)
            frame = self.motion_out(h).reshape(B, 1, self.num_vertices, 3)
            frames.append(frame)
            token = self.inputs(frame, style)
        return torch.cat(frames, dim=1)
