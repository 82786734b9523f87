"""VOCA (Cudeiro et al., CVPR 2019), written from the paper's description.

Per frame, non-autoregressive:

1. speech window — the encoder features of the 2K+1 frames around frame t (zero outside the clip), each
   reduced to a few channels (the paper used DeepSpeech's character logits; we reduce our shared encoder's
   features with a linear layer), with the subject's one-hot code concatenated to every frame of the window;
2. encoder       — strided 1-D convolutions along the window's time axis, then two fully connected layers
   to a small latent code (50-d);
3. decoder       — one linear layer from the latent to the V×3 vertex offsets (initialised from the PCA of
   training offsets by the trainer, as the paper did).

Training: position + velocity losses (``mmtalker.train.peers``). Shapes: ``B`` clips, ``T`` frames,
``C`` feature width, ``V`` vertices, ``S`` subjects, ``W = 2K+1`` window length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmtalker.audio.finetune import check_audio_finetune
from mmtalker.models.peer_base import DenseVertexModel, check_fps


@dataclass
class VocaConfig:
    """Network sizes; saved as JSON beside the weights."""

    subjects: list[str] = field(default_factory=list)  # training subjects, in one-hot order
    audio_encoder: str = "whisper-tiny.en"
    audio_dim: int = 384
    fps: float = 30.0
    window: int = 5  # K: frames each side (±5 at 30 fps ≈ ±0.17 s, the reach of VOCA's 16 × 20 ms window)
    feature_channels: int = 32  # per-frame speech channels after the reducing linear layer
    conv_channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])  # stride-2 convolutions
    hidden: int = 128
    latent: int = 50  # the paper's code size
    dropout: float = 0.0
    audio_finetune: int = 0  # N > 0: Whisper's blocks N … trained with the model (mmtalker.audio.finetune); 0: frozen
    audio_init: str | None = None  # with audio_finetune: a file of tuned blocks to start from (hearing_pretrain.py); unset: Whisper's own

    def check(self, where: str) -> None:
        """Called by the strict config builder (``mmtalker.train.config.build_dataclass``)."""
        check_fps(self.fps, where)
        check_audio_finetune(self, where)


class SpeechWindowEncoder(nn.Module):
    """(B, T, W, C') windows with the one-hot appended -> latent codes (B, T, latent)."""

    def __init__(self, config: VocaConfig, num_subjects: int):
        super().__init__()
        chans = [config.feature_channels + num_subjects, *config.conv_channels]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        length = 2 * config.window + 1
        for _ in config.conv_channels:
            length = (length - 1) // 2 + 1  # stride-2, kernel 3, padding 1
        self.fc = nn.Linear(chans[-1] * length + num_subjects, config.hidden)
        self.to_latent = nn.Linear(config.hidden, config.latent)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, windows: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        B, T, W, Cw = windows.shape
        h = windows.reshape(B * T, W, Cw).transpose(1, 2)  # (B·T, C'+S, W)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        h = torch.cat([h.flatten(1), onehot.repeat_interleave(T, 0)], dim=-1)  # identity again before the FC layers
        h = torch.tanh(self.fc(self.drop(h)))
        return self.to_latent(h).reshape(B, T, -1)  # (B, T, latent)


def frame_windows(x: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, T, C) -> (B, T, 2k+1, C): frame t's window holds frames t-k..t+k, zeros outside the clip
    (and on padded frames, when ``mask`` (B, T) is given)."""
    if mask is not None:
        x = x * mask.unsqueeze(-1).to(x.dtype)
    padded = F.pad(x, (0, 0, k, k))  # (B, T+2k, C)
    return padded.unfold(1, 2 * k + 1, 1).transpose(2, 3)  # (B, T, 2k+1, C)


class VOCA(DenseVertexModel):
    """speech windows + subject one-hot -> conv encoder -> 50-d code -> linear decoder -> offsets (motion units)."""

    def __init__(self, config: VocaConfig, template, subject_templates=None, motion_scale: float = 1.0, faces=None):
        super().__init__(config, template, subject_templates, motion_scale, faces)
        self.reduce = nn.Sequential(nn.LayerNorm(config.audio_dim), nn.Linear(config.audio_dim, config.feature_channels))
        self.encoder = SpeechWindowEncoder(config, self.num_subjects)
        self.decoder = nn.Linear(config.latent, self.num_vertices * 3)
        nn.init.zeros_(self.decoder.weight)  # start from "no motion"; the trainer sets the PCA basis
        nn.init.zeros_(self.decoder.bias)

    @torch.no_grad()
    def init_decoder_pca(self, offsets: torch.Tensor) -> None:
        """Set the decoder to the mean and principal directions of ``offsets`` (N, V, 3) in motion units,
        each direction scaled by its standard deviation (so unit-variance codes span the data)."""
        flat = offsets.reshape(offsets.shape[0], -1).to(self.decoder.weight)
        mean = flat.mean(0)
        _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        k = min(self.config.latent, vh.shape[0])
        std = s[:k] / max(flat.shape[0] - 1, 1) ** 0.5
        self.decoder.weight.zero_()
        self.decoder.weight[:, :k] = (vh[:k] * std[:, None]).T
        self.decoder.bias.copy_(mean)

    def motion(self, audio: torch.Tensor, subject: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """audio (B, T, C), subject (B,) -> offsets (B, T, V, 3) in motion units."""
        B, T, _ = audio.shape
        onehot = self.style_weights(subject)  # (B, S)
        windows = frame_windows(self.reduce(audio), self.config.window, mask)  # (B, T, W, C')
        windows = torch.cat([windows, onehot[:, None, None, :].expand(B, T, windows.shape[2], -1)], dim=-1)
        code = self.encoder(windows, onehot)  # (B, T, latent)
        return self.decoder(code).reshape(B, T, self.num_vertices, 3)

    def forward(self, audio, subject, mask=None):
        return self.motion(audio, subject, mask)
