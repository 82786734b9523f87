"""CodeTalker (Xing et al., CVPR 2023), written from the paper's description.

Stage 1 — a discrete motion prior (VQ-VAE of facial motion):
  offsets (B, T, V, 3) -> encoder (linear + temporal convolutions) -> latent (B, T, N·c) split into N face
  components of c channels -> each component replaced by its nearest codebook entry (straight-through
  gradient; codebook loss ‖sg(z) − e‖² and commitment loss β‖z − sg(e)‖²) -> decoder (temporal convolutions
  + linear) -> offsets.
Stage 2 — speech to codes, with the stage-1 model frozen:
  audio + subject style -> FaceFormer's autoregressive decoder (periodic positions, biased causal and
  alignment masks; ``mmtalker.models.faceformer.MotionDecoder``) predicting each frame's latent feature
  from the previous frames' quantised latents; the prediction is quantised with the frozen codebook and
  decoded by the frozen stage-1 decoder.

Shapes: ``B`` clips, ``T`` frames, ``V`` vertices, ``N`` components, ``c`` code width, ``L = N·c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmtalker.audio.finetune import check_audio_finetune
from mmtalker.errors import MMTalkerError
from mmtalker.models.blocks import TemporalConvBlock
from mmtalker.models.faceformer import MotionDecoder
from mmtalker.models.peer_base import DenseVertexModel, check_fps, check_own_inputs


@dataclass
class CodeTalkerConfig:
    """Network sizes of both stages; saved as JSON beside the weights."""

    subjects: list[str] = field(default_factory=list)
    audio_encoder: str = "whisper-tiny.en"
    audio_dim: int = 384
    fps: float = 30.0
    # stage 1: the motion VQ-VAE
    hidden: int = 128
    conv_layers: int = 2  # residual temporal convolutions in encoder and decoder (kernel 5, dilations 1, 2)
    components: int = 8  # N face components per frame, each quantised on its own
    code_dim: int = 16  # c
    codebook_size: int = 256
    # stage 2: the autoregressive speech-to-code decoder (FaceFormer's)
    d_model: int = 64
    heads: int = 4
    layers: int = 1
    ffn: int = 128
    period: int = 30
    audio_per_frame: int = 1
    dropout: float = 0.0
    own_inputs: float = 0.0  # stage 2: share of input frames whose codes are the model's own (0: teacher forcing)
    own_input_passes: int = 1  # stage 2: gradient-free passes that make those codes, each fed the last one's
    audio_finetune: int = 0  # N > 0: Whisper's blocks N … trained with the model (mmtalker.audio.finetune); 0: frozen
    audio_init: str | None = None  # with audio_finetune: a file of tuned blocks to start from (hearing_pretrain.py); unset: Whisper's own

    @property
    def latent_dim(self) -> int:
        return self.components * self.code_dim

    def check(self, where: str) -> None:
        """Called by the strict config builder (``mmtalker.train.config.build_dataclass``)."""
        check_fps(self.fps, where)
        check_own_inputs(self, where)
        check_audio_finetune(self, where)


# ------------------------------------------------------------------------------------------ vector quantiser
class VectorQuantizer(nn.Module):
    """Nearest-entry quantisation of (…, c) vectors against a codebook (K, c), with straight-through gradient."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z (…, c) -> (…,) index of the nearest codebook entry (squared Euclidean distance)."""
        flat = z.reshape(-1, z.shape[-1])
        e = self.codebook.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)  # (n, K)
        return dist.argmin(1).reshape(z.shape[:-1])

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (…, c) -> the nearest codebook entries (…, c) (no straight-through gradient)."""
        return self.codebook(self.indices(z))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (…, c) -> (straight-through quantised z: forward value e, gradient of identity w.r.t. z;
        the entries e themselves (…, c), carrying the codebook's gradient; indices (…,))."""
        idx = self.indices(z)
        e = self.codebook(idx)
        return z + (e - z).detach(), e, idx


def vq_losses(z: torch.Tensor, e: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook loss mean‖sg(z) − e‖² and commitment loss mean‖z − sg(e)‖² (un-weighted by β) over the
    real frames. z, e (B, T, N, c); mask (B, T) True on real frames. Means are over frames × N × c."""
    per_frame_cb = (z.detach() - e).pow(2).mean((-2, -1))  # (B, T)
    per_frame_cm = (z - e.detach()).pow(2).mean((-2, -1))
    if mask is None:
        return per_frame_cb.mean(), per_frame_cm.mean()
    m = mask.to(z.dtype)
    n = m.sum().clamp_min(1.0)
    return (per_frame_cb * m).sum() / n, (per_frame_cm * m).sum() / n


# ------------------------------------------------------------------------------------------ stage 1: VQ-VAE
class TemporalStack(nn.Module):
    """(B, T, D_in) -> linear -> residual temporal convolutions -> norm -> linear -> (B, T, D_out)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.blocks = nn.ModuleList(TemporalConvBlock(hidden, 5, dilation=2**i, dropout=dropout) for i in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, mask)
        return self.out(self.norm(h))


class MotionVQVAE(nn.Module):
    """Stage 1: offsets (B, T, V, 3) <-> quantised latents (B, T, N, c)."""

    def __init__(self, config: CodeTalkerConfig, num_vertices: int):
        super().__init__()
        self.config = config
        n = num_vertices * 3
        self.encoder = TemporalStack(n, config.hidden, config.latent_dim, config.conv_layers, config.dropout)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim)
        self.decoder = TemporalStack(config.latent_dim, config.hidden, n, config.conv_layers, config.dropout)

    def encode(self, motion: torch.Tensor, mask=None) -> torch.Tensor:
        """(B, T, V, 3) -> continuous latents (B, T, N, c)."""
        B, T = motion.shape[:2]
        return self.encoder(motion.flatten(2), mask).reshape(B, T, self.config.components, self.config.code_dim)

    def decode(self, latents: torch.Tensor, mask=None) -> torch.Tensor:
        """(B, T, N, c) -> offsets (B, T, V, 3)."""
        B, T = latents.shape[:2]
        return self.decoder(latents.flatten(2), mask).reshape(B, T, -1, 3)

    def forward(self, motion: torch.Tensor, mask=None):
        """motion (B, T, V, 3) -> (reconstruction (B, T, V, 3), z (B, T, N, c), entries e (B, T, N, c))."""
        z = self.encode(motion, mask)
        z_st, e, _ = self.quantizer(z)
        return self.decode(z_st, mask), z, e


# -------------------------------------------------------------------------------------------------- model
class CodeTalker(DenseVertexModel):
    """Both stages in one module. ``stages_trained`` (a buffer: 0, 1 or 2) records how far training went;
    speech-driven prediction needs 2."""

    def __init__(self, config: CodeTalkerConfig, template, subject_templates=None, motion_scale: float = 1.0, faces=None):
        super().__init__(config, template, subject_templates, motion_scale, faces)
        d = config.d_model
        self.register_buffer("stages_trained", torch.tensor(0))
        self.vqvae = MotionVQVAE(config, self.num_vertices)
        self.style = nn.Linear(self.num_subjects, d, bias=False)
        self.code_in = nn.Linear(config.latent_dim, d)
        self.decoder = MotionDecoder(config)
        self.code_out = nn.Linear(d, config.latent_dim)

    # -- stage 2 pieces --------------------------------------------------------------------------------
    def _tokens(self, latents: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """latents (B, T', N, c) -> input tokens (B, T', D) = projection + style."""
        return self.code_in(latents.flatten(2)) + style.unsqueeze(1)

    def _features(self, h: torch.Tensor) -> torch.Tensor:
        """decoder output (B, T', D) -> predicted latent features (B, T', N, c)."""
        B, T = h.shape[:2]
        return self.code_out(h).reshape(B, T, self.config.components, self.config.code_dim)

    def speech_to_latents(self, audio, subject, target_latents):
        """Teacher forcing. audio (B, T, C), subject (B,), target_latents (B, T, N, c) quantised truth ->
        predicted features (B, T, N, c) (before quantisation)."""
        style = self.style(self.style_weights(subject))
        tokens = torch.cat([style.unsqueeze(1), self._tokens(target_latents[:, :-1], style)], dim=1)
        return self._features(self.decoder(tokens, audio))

    def motion(self, audio: torch.Tensor, subject: torch.Tensor, mask=None) -> torch.Tensor:
        """Autoregressive: audio (B, T, C), subject (B,) -> (B, T, V, 3) in motion units."""
        if int(self.stages_trained) < 2:
            raise MMTalkerError("CodeTalker model", f"only stage {int(self.stages_trained)} of 2 is trained",
                                "train stage 2 (stages: [2] with stage1_checkpoint) before predicting from speech")
        B, T = audio.shape[:2]
        style = self.style(self.style_weights(subject))
        audio_kv = self.decoder.audio_keys(audio)
        caches = [[] for _ in self.decoder.layers]
        token, latents = style.unsqueeze(1), []
        for t in range(T):
            feat = self._features(self.decoder.step(token, t, audio_kv, caches, T))  # (B, 1, N, c)
            code = self.vqvae.quantizer.nearest(feat)
            latents.append(code)
            token = self._tokens(code, style)
        return self.vqvae.decode(torch.cat(latents, dim=1), mask)
