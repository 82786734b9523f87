"""MMTalker: speech-driven 3D facial animation as a continuous displacement field over the face's UV plane.

Reads top to bottom like the pipeline (docs/internals.md, "MMTalker model, training and checkpoints"):

1. geometry  — a residual GCN over the template mesh graph gives per-vertex features G (B, V, D), pooled by
   a learned soft assignment into K region tokens (B, K, D);
2. audio     — frozen speech-encoder features at the mesh frame rate (computed outside, see
   ``mmtalker.train.data``) are projected and mixed over time (local), plus an utterance embedding (global)
   and the subject's style embedding;
3. fusion    — dual cross-attention: frames attend to region tokens (audio→geometry) and region tokens
   attend to frames, then are read back by every frame (geometry→audio), giving motion features z_t (B, T, D);
4. regressor — an MLP on [Fourier(u), G(u)] (plus learned UV feature maps read at u, with ``uv_grid``) and
   z_t predicting the 3D displacement of any UV point u per frame. Its first layer is factorised,
   W_p·[Fourier(u), G(u)] + W_z·z_t, so T frames × P points cost one matrix product per point set plus one
   per frame.
5. eyes      — optional (``eye_pathway``): the eye region's displacement comes from a second, local speech
   pathway instead: one of the encoder's early hidden states (no sentence context), ``eye_past`` frames back
   and ``eye_future`` ahead, the subject's style, its own per-frame head over the same displacement fields.
   The two are blended per point by the eye region's mask, softened at its edge (docs/results.md: the
   whole-sentence features made the blink at a clip's start vary with the coming words).

Training queries points drawn by the non-uniform sampler (``face_idx``, ``bary``, ``uv``); inference
queries the vertices themselves (``predict_vertices``). Displacements are in the dataset's length unit;
internally the network predicts them divided by ``motion_scale`` (the RMS of the training displacements).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmtalker.audio.finetune import TunedBlocks, check_audio_finetune
from mmtalker.audio.spec import main_streams
from mmtalker.errors import MMTalkerError
from mmtalker.mesh.graph import ResidualGCN, mesh_adjacency
from mmtalker.mesh.uv import barycentric_interpolate
from mmtalker.models.blocks import AttentionPool, CrossAttention, FeedForward, FourierFeatures, TemporalConvBlock, UVFeatureGrid
from mmtalker.models.peer_base import check_fps

UNSEEN_SUBJECT = -1  # subject index meaning "no training subject": the mean style embedding is used


@dataclass
class MMTalkerConfig:
    """Everything that shapes the network; saved as JSON beside the weights (``config.json``)."""

    subjects: list[str] = field(default_factory=list)  # training subjects, in style-embedding order
    audio_encoder: str = "whisper-tiny.en"  # spec for mmtalker.audio.encoders.build_audio_encoder
    audio_dim: int = 384  # width of one layer of the encoder's features (whisper-tiny.en: 384); the model reads
                          # ``feature_streams`` layers side by side, (B, T, audio_dim × feature_streams)
    fps: float = 30.0  # mesh frame rate the model was trained at (from the dataset manifest)
    d_model: int = 128
    gcn_layers: int = 4
    gcn_dim: int = 64  # width of the GCN's residual stream (its output is d_model): the GCN runs on V vertices per template
    num_region_tokens: int = 32
    heads: int = 4
    audio_layers: int = 3  # residual temporal convolutions, dilations 1, 2, 4, … (receptive field ±(2^L−1)·2 frames)
    audio_kernel: int = 5
    fusion_layers: int = 1  # dual cross-attention blocks
    fourier_frequencies: int = 6  # up to 2^5 π: a period of 1/16 of the UV square (the UV grid adds finer detail)
    uv_grid: list[int] = field(default_factory=list)  # resolutions of learned UV feature maps (empty: none)
    uv_grid_channels: int = 8  # channels of each UV feature map
    regressor_hidden: int = 128  # width of the factorised first layer
    regressor_layers: list[int] = field(default_factory=lambda: [64])  # further hidden widths before the 3-D output
    regressor_rank: int = 0  # > 0: the low-rank regressor (K basis fields over UV mixed per frame); 0: the MLP
    dropout: float = 0.0
    feature_dropout: float = 0.0  # training: share of the speech features' channels zeroed per frame (after their norm)
    utterance_dropout: float = 0.0  # training: share of clips whose utterance-level paths (pooled audio, tokens
                                    # reading the clip) are switched off, so frames cannot lean on the sentence
    style_dropout: float = 0.0  # training: share of clips animated with the mean style, as unseen speakers are
    template_jitter: float = 0.0  # training: the geometry encoder sees each template scaled by 1 ± this per axis
    eye_pathway: bool = False  # the eye region moved by the local speech pathway (stage 5 above); needs an eye region
    eye_layer: int = 0  # the encoder hidden state it reads (Whisper's 0: the convolutional embeddings plus positions)
    eye_past: int = 20  # frames of that input before the current one it sees
    eye_future: int = 3  # and after it
    eye_edge_smoothing: int = 2  # neighbour-averaging steps that soften the eye mask's edge in the blend
    eye_own_style: bool = False  # the eye pathway gets its own speaker embedding instead of sharing the main one's
                                 # (trials: the lips of a clip's first frames no longer pay; docs/results.md)
    audio_finetune: int = 0  # N > 0: Whisper's blocks N … (the last state read) trained with the model, held in it as
                             # ``audio_blocks`` (mmtalker.audio.finetune); 0: the encoder frozen
    audio_init: str | None = None  # with audio_finetune: a file of tuned blocks to start from (hearing_pretrain.py); unset: Whisper's own
    audio_window: int = 0  # > 0 (with audio_finetune): the tuned blocks attend only to encoder frames at most this many
                           # away (50 per second), in training and at inference; 0: to the whole clip, as Whisper was trained

    @property
    def main_streams(self) -> int:
        """Hidden states the audio head reads side by side: the spec's (``@3+2``: two), by default the last alone."""
        return main_streams(self.audio_encoder)

    @property
    def feature_streams(self) -> int:
        """Encoder hidden states the model reads side by side: the main ones (the spec's, by default the last) and the extra ones."""
        return self.main_streams + len(self.extra_encoder_layers())

    def extra_encoder_layers(self) -> list[int]:
        """The hidden states read beside the encoder's main one (``mmtalker.audio.encoders.model_audio_encoder``)."""
        return [self.eye_layer] if self.eye_pathway else []

    def check(self, where: str) -> None:
        """Called by the strict config builder (``mmtalker.train.config.build_dataclass``)."""
        check_fps(self.fps, where)
        for key in ("d_model", "gcn_layers", "gcn_dim", "num_region_tokens", "heads", "audio_layers", "fusion_layers",
                    "regressor_hidden"):
            if getattr(self, key) < 1:
                raise MMTalkerError(where, f"setting '{key}' must be 1 or more, got {getattr(self, key)}")
        if self.d_model % self.heads:
            raise MMTalkerError(where, f"setting 'heads' ({self.heads}) must divide d_model ({self.d_model})")
        if self.audio_kernel < 1 or self.audio_kernel % 2 == 0:
            raise MMTalkerError(where, f"setting 'audio_kernel' must be an odd number of frames (1, 3, 5, …), got {self.audio_kernel}")
        for key in ("fourier_frequencies", "regressor_rank"):
            if getattr(self, key) < 0:
                raise MMTalkerError(where, f"setting '{key}' must be 0 or more, got {getattr(self, key)}")
        if any(int(w) != w or w < 1 for w in self.regressor_layers):
            raise MMTalkerError(where, f"setting 'regressor_layers' must list widths of 1 or more, got {self.regressor_layers}")
        for key in ("dropout", "feature_dropout", "utterance_dropout", "style_dropout", "template_jitter"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise MMTalkerError(where, f"setting '{key}' must lie in [0, 1), got {value}")
        if any(int(r) != r or r < 2 for r in self.uv_grid):
            raise MMTalkerError(where, f"setting 'uv_grid' must list map resolutions of 2 or more, got {self.uv_grid}")
        if self.uv_grid and self.uv_grid_channels < 1:
            raise MMTalkerError(where, f"setting 'uv_grid_channels' must be 1 or more, got {self.uv_grid_channels}")
        for key in ("eye_past", "eye_future", "eye_edge_smoothing", "audio_window"):
            if getattr(self, key) < 0:
                raise MMTalkerError(where, f"setting '{key}' must be 0 or more, got {getattr(self, key)}")
        check_audio_finetune(self, where)  # a spec it cannot tune, or a block it does not read, is refused here


# --------------------------------------------------------------------------------------------------- geometry
def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals. vertices (…, V, 3), faces (F, 3) -> (…, V, 3)."""
    a, b, c = (vertices[..., faces[:, i], :] for i in range(3))
    face_n = torch.cross(b - a, c - a, dim=-1)  # (…, F, 3), length = 2·area
    normals = torch.zeros_like(vertices)
    for i in range(3):
        normals = normals.index_add(-2, faces[:, i], face_n)
    return F.normalize(normals, dim=-1, eps=1e-12)


class GeometryEncoder(nn.Module):
    """Residual GCN over the mesh graph, then soft pooling into region tokens.

    Input: templates (B, V, 3) in the dataset's unit; per-vertex input features are
    [normalised xyz, normal, vertex UV] (8 channels). Output: G (B, V, D), tokens (B, K, D).
    """

    def __init__(self, config: MMTalkerConfig, faces: torch.Tensor, vertex_uv: torch.Tensor, template: torch.Tensor):
        super().__init__()
        d = config.d_model
        # a plain attribute, not a buffer: DDP cannot broadcast sparse buffers; moved to the device on use
        self._adjacency = mesh_adjacency(faces, template.shape[0]).coalesce()
        center = template.mean(0)
        self.register_buffer("center", center, persistent=False)
        self.register_buffer("scale", (template - center).norm(dim=-1).max().clamp_min(1e-12), persistent=False)
        self.gcn = ResidualGCN(8, config.gcn_dim, d, config.gcn_layers)
        self.assign = nn.Linear(d, config.num_region_tokens)

    def forward(self, templates: torch.Tensor, faces: torch.Tensor, vertex_uv: torch.Tensor):
        B, V, _ = templates.shape
        xyz = (templates - self.center) / self.scale
        x = torch.cat([xyz, vertex_normals(templates, faces), vertex_uv.expand(B, V, 2)], dim=-1)  # (B, V, 8)
        if self._adjacency.device != x.device:
            self._adjacency = self._adjacency.to(x.device)
        g = self.gcn(x, self._adjacency)  # (B, V, D)
        assign = torch.softmax(self.assign(g), dim=1)  # (B, V, K): each token a soft region of the mesh
        tokens = torch.einsum("bvk,bvd->bkd", assign, g)  # weights over V sum to 1
        return g, tokens


# ------------------------------------------------------------------------------------------------------ audio
def speaker_vectors(table: nn.Embedding, subject: torch.Tensor) -> torch.Tensor:
    """A speaker embedding's rows for subject (B,) long -> (B, D); UNSEEN_SUBJECT gets the mean of all rows."""
    mean = table.weight.mean(0, keepdim=True).expand(subject.shape[0], -1)
    return torch.where((subject >= 0).unsqueeze(-1), table(subject.clamp_min(0)), mean)


class AudioEncoderHead(nn.Module):
    """Frozen speech features (B, T, C) at the mesh fps -> per-frame audio features (B, T, D).

    local: projection + dilated residual temporal convolutions; global: attention-pooled utterance
    embedding added back to every frame; style: the subject's learned embedding added to every frame.
    """

    def __init__(self, config: MMTalkerConfig):
        super().__init__()
        d = config.d_model
        width = config.audio_dim * config.main_streams
        self.proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d))
        self.local = nn.ModuleList(
            TemporalConvBlock(d, config.audio_kernel, dilation=2**i, dropout=config.dropout) for i in range(config.audio_layers)
        )
        self.feature_dropout = config.feature_dropout
        self.pool = AttentionPool(d)
        self.style = nn.Embedding(max(len(config.subjects), 1), d)
        nn.init.normal_(self.style.weight, std=0.02)

    def style_vectors(self, subject: torch.Tensor) -> torch.Tensor:
        """subject (B,) long, UNSEEN_SUBJECT for the mean style -> (B, D)."""
        return speaker_vectors(self.style, subject)

    def forward(self, audio: torch.Tensor, subject: torch.Tensor, mask: torch.Tensor | None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep`` (B,) in {0, 1}: whether each clip's utterance-level vector is added (None: all)."""
        norm, linear = self.proj
        h = linear(F.dropout(norm(audio), self.feature_dropout, self.training))  # (B, T, D)
        for block in self.local:
            h = block(h, mask)
        pooled = self.pool(h, mask)
        if keep is not None:
            pooled = pooled * keep.unsqueeze(-1)
        return h + pooled.unsqueeze(1) + self.style_vectors(subject).unsqueeze(1)


class EyePathway(nn.Module):
    """Speech features (B, T, C) -> (B, T, D) from ``past`` frames before and ``future`` after each frame only:
    projection, one residual temporal convolution, the subject's style, a feed-forward layer. No utterance
    pooling, no fusion: nothing beyond that window reaches it."""

    def __init__(self, config: MMTalkerConfig):
        super().__init__()
        d = config.d_model
        self.proj = nn.Sequential(nn.LayerNorm(config.audio_dim), nn.Linear(config.audio_dim, d))
        self.feature_dropout = config.feature_dropout
        self.pad = (config.eye_past, config.eye_future)
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, config.eye_past + config.eye_future + 1)
        self.mix = nn.Conv1d(d, d, 1)
        self.drop = nn.Dropout(config.dropout)
        self.ff = FeedForward(d, dropout=config.dropout)

    def forward(self, features: torch.Tensor, style: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """features (B, T, C), style (B, D), mask (B, T) or None -> (B, T, D)."""
        norm, linear = self.proj
        h = linear(F.dropout(norm(features), self.feature_dropout, self.training))
        x = self.norm(h)
        if mask is not None:
            x = x * mask.unsqueeze(-1)  # padding must not leak into real frames
        x = self.mix(F.gelu(self.conv(F.pad(x.transpose(1, 2), self.pad)))).transpose(1, 2)
        return self.ff(h + self.drop(x) + style.unsqueeze(1))


# ----------------------------------------------------------------------------------------------------- fusion
class DualCrossAttention(nn.Module):
    """z_t = h_t + A2G(h_t; tokens) + G2A(h_t; tokens + Attn(tokens; h)), then a feed-forward layer.

    A2G: each frame reads the region tokens (which parts of the face this sound moves).
    G2A: each region token first reads the whole utterance, then every frame reads these updated tokens.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.a2g = CrossAttention(dim, heads, dropout)
        self.g2a = CrossAttention(dim, heads, dropout)
        self.readback = CrossAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None,
                keep: torch.Tensor | None = None, last: int | None = None) -> torch.Tensor:
        """``keep`` (B,) in {0, 1}: whether each clip's tokens read the utterance (None: all). ``last``: only
        the last ``last`` frames' outputs, (B, last, D), the same values as ``forward(...)[:, -last:]`` (the
        tokens still read every frame; only the per-frame work is skipped for the others)."""
        read = self.g2a(tokens, h, mask)  # (B, K, D)
        if keep is not None:
            read = read * keep[:, None, None]
        if last is not None:
            h = h[:, -last:]
        audio_to_geometry = self.a2g(h, tokens)  # (B, T, D)
        tokens_in_context = tokens + read
        geometry_to_audio = self.readback(h, tokens_in_context)  # (B, T, D)
        return self.ff(h + audio_to_geometry + geometry_to_audio)


# -------------------------------------------------------------------------------------------------- regressor
class DisplacementRegressor(nn.Module):
    """d(u, t) = MLP(GELU(W_p·p(u) + W_z·z_t + b)) with p(u) = [Fourier(u), G(u)]; output in motion units.

    ``point_part`` (B, P, H) and ``frame_part`` (B, T, H) are computed separately and broadcast-added,
    which equals the first layer of an MLP on the concatenation [p(u), z_t] (tested).
    """

    def __init__(self, point_dim: int, frame_dim: int, hidden: int, layers: list[int]):
        super().__init__()
        self.point_in = nn.Linear(point_dim, hidden)
        self.frame_in = nn.Linear(frame_dim, hidden, bias=False)
        widths = [hidden, *layers]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 3)
        nn.init.zeros_(self.out.weight)  # start from "no motion": a calm, stable beginning
        nn.init.zeros_(self.out.bias)

    def point_part(self, point_features: torch.Tensor) -> torch.Tensor:
        return self.point_in(point_features)  # (B, P, H)

    def frame_part(self, z: torch.Tensor) -> torch.Tensor:
        return self.frame_in(z)  # (B, T, H)

    def head(self, pre: torch.Tensor) -> torch.Tensor:
        """pre-activation (…, H) -> displacement (…, 3)."""
        h = F.gelu(pre)
        for layer in self.hidden:
            h = F.gelu(layer(h))
        return self.out(h)

    def forward(self, point_part: torch.Tensor, frame_part: torch.Tensor) -> torch.Tensor:
        """point_part (B, P, H), frame_part (B, T, H) -> (B, T, P, 3)."""
        return self.head(frame_part.unsqueeze(2) + point_part.unsqueeze(1))

    def prepare_points(self, point_part: torch.Tensor) -> torch.Tensor:
        """The per-point half in the form :meth:`decode` takes (here: unchanged)."""
        return point_part

    def decode(self, prepared: torch.Tensor, frame_part: torch.Tensor) -> torch.Tensor:
        """Inference: :meth:`prepare_points`' result and frame_part (B, T, H) -> (B, T, P, 3)."""
        return self(prepared, frame_part)


class LowRankRegressor(nn.Module):
    """d(u, t) = Σ_k c_k(z_t) · φ_k(u): K displacement fields over the surface, mixed per frame.

    φ(u) = MLP([Fourier(u), G(u)]) gives each point K 3-D basis vectors (computed once per mesh at
    inference); c(z_t) gives each frame K coefficients. Decoding T frames × P points is then one matrix
    product (T×K)·(K×3P), with no (T, P, H) intermediate: the cost that dominates the MLP regressor.
    Same interface as :class:`DisplacementRegressor`.
    """

    def __init__(self, point_dim: int, frame_dim: int, hidden: int, rank: int):
        super().__init__()
        self.rank = rank
        self.point_in = nn.Linear(point_dim, hidden)
        self.out = nn.Linear(hidden, rank * 3)  # the basis vectors
        self.frame_in = nn.Sequential(nn.Linear(frame_dim, hidden), nn.GELU(), nn.Linear(hidden, rank))
        nn.init.zeros_(self.frame_in[-1].weight)  # start from "no motion"; the basis still gets gradients
        nn.init.zeros_(self.frame_in[-1].bias)

    def point_part(self, point_features: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.point_in(point_features)))  # (B, P, 3K)

    def frame_part(self, z: torch.Tensor) -> torch.Tensor:
        return self.frame_in(z)  # (B, T, K)

    def forward(self, point_part: torch.Tensor, frame_part: torch.Tensor) -> torch.Tensor:
        """point_part (B, P, 3K), frame_part (B, T, K) -> (B, T, P, 3)."""
        return self.decode(self.prepare_points(point_part), frame_part)

    def prepare_points(self, point_part: torch.Tensor) -> torch.Tensor:
        """point_part (B, P, 3K) -> the basis as one (B, K, 3P) matrix (a copy: done once per mesh at inference,
        not per decoded chunk)."""
        B, P, _ = point_part.shape
        return point_part.view(B, P, self.rank, 3).permute(0, 2, 1, 3).reshape(B, self.rank, P * 3)

    def decode(self, basis: torch.Tensor, frame_part: torch.Tensor) -> torch.Tensor:
        """basis (B, K, 3P) from :meth:`prepare_points`, frame_part (B, T, K) -> (B, T, P, 3)."""
        B, T = frame_part.shape[:2]
        return torch.bmm(frame_part, basis).view(B, T, basis.shape[2] // 3, 3)


# ------------------------------------------------------------------------------------------------------ model
class MMTalker(nn.Module):
    """The full model. Mesh facts travel with it as buffers, so a checkpoint needs nothing else.

    Args:
        config: network sizes and the training subjects.
        faces: (F, 3) long, the topology's triangles.
        vertex_uv: (V, 2) float in [0, 1]², one UV per vertex (``UVMap.vertex_uv``).
        template: (V, 3) float, the neutral template (dataset unit), used when no other is given.
        subject_templates: (S, V, 3) float, the training subjects' templates in ``config.subjects`` order.
        motion_scale: RMS of training displacement coordinates (dataset unit; ``mmtalker.train.data.motion_scale``);
            outputs are scaled by it.
        corner_uv: (F, 3, 2) float, each face corner's UV (``UVMap.uv[UVMap.faces_uv]``): on a mesh whose UVs have
            seams a vertex has one UV per chart, and a point inside a face crossing no seam in UV takes its corners'
            UVs from these (retargeting). Default ``vertex_uv[faces]`` (a map without seams).
    """

    def __init__(self, config: MMTalkerConfig, faces, vertex_uv, template, subject_templates=None, motion_scale=1.0,
                 corner_uv=None):
        super().__init__()
        self.config = config
        faces = torch.as_tensor(faces, dtype=torch.long)
        template = torch.as_tensor(template, dtype=torch.float32)
        vertex_uv = torch.as_tensor(vertex_uv, dtype=torch.float32)
        if subject_templates is None:
            subject_templates = template.expand(max(len(config.subjects), 1), -1, -1)
        self.register_buffer("faces", faces)
        self.register_buffer("vertex_uv", vertex_uv)
        corner_uv = vertex_uv[faces] if corner_uv is None else torch.as_tensor(corner_uv, dtype=torch.float32)
        if corner_uv.shape != (faces.shape[0], 3, 2):
            raise ValueError(f"corner_uv must be (F, 3, 2) = ({faces.shape[0]}, 3, 2), got {tuple(corner_uv.shape)}")
        self.register_buffer("corner_uv", corner_uv.clone())
        self.register_buffer("template", template)
        self.register_buffer("subject_templates", torch.as_tensor(subject_templates, dtype=torch.float32).clone())
        self.register_buffer("motion_scale", torch.tensor(float(motion_scale)))

        d = config.d_model
        self.geometry = GeometryEncoder(config, faces, vertex_uv, template)
        self.audio = AudioEncoderHead(config)
        self.fusion = nn.ModuleList(DualCrossAttention(d, config.heads, config.dropout) for _ in range(config.fusion_layers))
        self.fourier = FourierFeatures(config.fourier_frequencies)
        self.uv_grid = UVFeatureGrid(config.uv_grid, config.uv_grid_channels) if config.uv_grid else None
        point_dim = self.fourier.out_dim + d + (self.uv_grid.out_dim if self.uv_grid is not None else 0)
        if config.regressor_rank > 0:
            self.regressor = LowRankRegressor(point_dim, d, config.regressor_hidden, config.regressor_rank)
        else:
            self.regressor = DisplacementRegressor(point_dim, d, config.regressor_hidden, config.regressor_layers)
        self.eye = EyePathway(config) if config.eye_pathway else None
        if self.eye is not None:
            self.eye_frame_in = copy.deepcopy(self.regressor.frame_in)  # its own per-frame head, same shape
            if config.eye_own_style:
                self.eye_style = nn.Embedding(max(len(config.subjects), 1), d)
                nn.init.normal_(self.eye_style.weight, std=0.02)
            self.register_buffer("eye_weight", torch.zeros(template.shape[0]))  # (V,) set by set_eye_region
        # fine-tuned speech-encoder blocks: not used by forward (it takes features); the trainer runs them on the
        # cached frozen states, inference copies them into the encoder (mmtalker.audio.finetune)
        self.audio_blocks = TunedBlocks(config, config.audio_dim) if config.audio_finetune else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before corner_uv was kept: this model's own corner UVs stay (built from the dataset's map when
        # a run resumes; vertex_uv[faces], what retargeting used then, when an old checkpoint is loaded)
        key = prefix + "corner_uv"
        if key not in state_dict:
            state_dict[key] = self.corner_uv.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    def set_eye_region(self, vertex_ids, where: str = "eye region") -> None:
        """The eye pathway's blend weight per vertex: 1 on ``vertex_ids``, its edge softened by
        ``eye_edge_smoothing`` rounds of averaging over each vertex and its mesh neighbours (weighted as in the
        GCN's normalised adjacency), so the blend fades over a few rings instead of switching at one edge."""
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long).reshape(-1)
        if ids.numel() == 0 or ids.min() < 0 or ids.max() >= self.num_vertices:
            raise MMTalkerError(where, f"must name vertices in [0, {self.num_vertices}), got {ids.numel()} indices"
                                + (f" from {ids.min().item()} to {ids.max().item()}" if ids.numel() else ""))
        w = torch.zeros(self.num_vertices, 1)
        w[ids] = 1.0
        adj = self.geometry._adjacency.cpu()  # the GCN's normalised adjacency with self loops
        total = torch.sparse.mm(adj, torch.ones_like(w))
        for _ in range(self.config.eye_edge_smoothing):
            w = torch.sparse.mm(adj, w) / total  # a weighted mean over each vertex and its neighbours
        self.eye_weight.copy_(w[:, 0])

    def eye_style_vectors(self, subject: torch.Tensor) -> torch.Tensor:
        """With ``eye_own_style``: the eye pathway's speaker vectors, subject (B,) -> (B, D); UNSEEN_SUBJECT gets their mean."""
        return speaker_vectors(self.eye_style, subject)

    def eye_weight_at(self, face_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """The eye pathway's blend weight at surface points: face_idx (P,), bary (P, 3) -> (P,)."""
        return barycentric_interpolate(self.eye_weight[:, None], self.faces, face_idx, bary)[:, 0]

    def subject_index(self, name: str | None) -> int:
        """Style index of a training subject; None or an unknown name gives UNSEEN_SUBJECT (mean style)."""
        return self.config.subjects.index(name) if name in self.config.subjects else UNSEEN_SUBJECT

    # -- stages ------------------------------------------------------------------------------------------
    def encode_geometry(self, templates: torch.Tensor):
        """templates (B, V, 3) -> per-vertex features G (B, V, D), region tokens (B, K, D).

        Identical templates in the batch (clips of one subject) are encoded once.
        """
        unique, inverse = torch.unique(templates.flatten(1), dim=0, return_inverse=True)
        unique = self._jitter(unique.view(-1, *templates.shape[1:]))
        g, tokens = self.geometry(unique, self.faces, self.vertex_uv)
        return g[inverse], tokens[inverse]

    def _jitter(self, templates: torch.Tensor) -> torch.Tensor:
        """Training with ``template_jitter``: each template scaled about its centroid by 1 ± j per axis."""
        j = self.config.template_jitter
        if not self.training or j <= 0:
            return templates
        scale = 1 + j * (2 * torch.rand(templates.shape[0], 1, 3, device=templates.device) - 1)
        centre = templates.mean(1, keepdim=True)
        return centre + (templates - centre) * scale

    def _training_style(self, subject: torch.Tensor) -> torch.Tensor:
        """Training with ``style_dropout``: a share of the clips get UNSEEN_SUBJECT (the mean style)."""
        if not self.training or self.config.style_dropout <= 0:
            return subject
        mean_style = torch.rand(subject.shape[0], device=subject.device) < self.config.style_dropout
        return torch.where(mean_style, torch.full_like(subject, UNSEEN_SUBJECT), subject)

    def _split_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> the main hidden states' features (the spec's, side by side) and the eye pathway's (None without it)."""
        width, streams = self.config.audio_dim, self.config.feature_streams
        if audio.shape[-1] != streams * width:
            raise MMTalkerError("speech features", f"are {audio.shape[-1]} wide; this model reads {streams} {width}-wide "
                                f"stream{'s' if streams > 1 else ''}",
                                "build the encoder with mmtalker.audio.encoders.model_audio_encoder(config)")
        if self.eye is None:
            return audio, None
        main = width * self.config.main_streams
        return audio[..., :main], audio[..., main:]

    def encode_motion(self, audio: torch.Tensor, subject: torch.Tensor, tokens: torch.Tensor, mask=None) -> torch.Tensor:
        """audio (B, T, C) encoder features at the mesh fps, subject (B,), tokens (B, K, D) -> z (B, T, D)."""
        return self._encode_motion(self._split_features(audio)[0], self._training_style(subject), tokens, mask)

    def _encode_motion(self, audio, subject, tokens, mask, last: int | None = None):
        keep = None
        if self.training and self.config.utterance_dropout > 0:
            keep = (torch.rand(audio.shape[0], device=audio.device) >= self.config.utterance_dropout).to(audio.dtype)
        h = self.audio(audio, subject, mask, keep)
        for k, block in enumerate(self.fusion):
            h = block(h, tokens, mask, keep, last=last if k == len(self.fusion) - 1 else None)
        return h

    def frame_part(self, audio: torch.Tensor, subject: torch.Tensor, tokens: torch.Tensor, mask=None,
                   last: int | None = None) -> torch.Tensor:
        """The regressor's per-frame input: audio (B, T, C), subject (B,), tokens (B, K, D) -> (B, T, H), or
        with the eye pathway the main and the eye pathway's side by side, (B, T, 2H), for :meth:`decode`.

        ``last``: only the last ``last`` frames, (B, last, H[·2]), the same values as ``frame_part(...)[:,
        -last:]``: the stages that see the whole sequence (temporal convolutions, utterance pooling, the tokens'
        reading) still run on every frame, the per-frame ones only on those (streaming's new frames)."""
        if last is not None and not 0 < last <= audio.shape[1]:
            raise MMTalkerError("frame_part", f"last={last} for {audio.shape[1]} frames")
        main, eye = self._split_features(audio)
        subject = self._training_style(subject)
        part = self.regressor.frame_part(self._encode_motion(main, subject, tokens, mask, last))
        if self.eye is None:
            return part
        style = self.eye_style_vectors(subject) if self.config.eye_own_style else self.audio.style_vectors(subject)
        if last is not None:  # the eye pathway sees eye_past frames back: no frame before those reaches the last ones
            eye = eye[:, -min(eye.shape[1], last + self.config.eye_past):]
            mask = None if mask is None else mask[:, -eye.shape[1]:]
        eye_part = self.eye_frame_in(self.eye(eye, style, mask))
        return torch.cat([part, eye_part if last is None else eye_part[:, -last:]], dim=-1)

    def decode(self, prepared: torch.Tensor, frame_part: torch.Tensor, eye_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Displacements in motion units (B, T, P, 3) from the points' ``regressor.prepare_points`` result and
        :meth:`frame_part`'s (B, T, H[·2]); ``eye_weight`` (P,): the eye pathway's share at each point."""
        if self.eye is None:
            return self.regressor.decode(prepared, frame_part)
        main, eye = frame_part.chunk(2, dim=-1)
        out = self.regressor.decode(prepared, main)
        return out + (self.regressor.decode(prepared, eye) - out) * eye_weight[:, None]

    def point_features(self, g: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """[uv_features(u), G(u)] at UV points: g (B, V, D), face_idx (P,), bary (P, 3), uv (P, 2) -> (B, P, Cp)."""
        g_at = barycentric_interpolate(g, self.faces, face_idx, bary)  # (B, P, D)
        return torch.cat([self.uv_features(uv).expand(g.shape[0], -1, -1), g_at], dim=-1)

    def vertex_features(self, g: torch.Tensor) -> torch.Tensor:
        """[uv_features(u_v), G_v] at the vertices: g (B, V, D) -> (B, V, Cp)."""
        return torch.cat([self.uv_features(self.vertex_uv).expand(g.shape[0], -1, -1), g], dim=-1)

    def uv_features(self, uv: torch.Tensor) -> torch.Tensor:
        """The part of a point's features that depends on its UV alone: uv (P, 2) -> (P, Fourier [+ grid])."""
        if self.uv_grid is None:
            return self.fourier(uv)
        return torch.cat([self.fourier(uv), self.uv_grid(uv)], dim=-1)

    # -- entry points --------------------------------------------------------------------------------------
    def forward(self, audio, subject, templates, face_idx, bary, uv, mask=None) -> torch.Tensor:
        """Training path: displacement at sampled UV points.

        audio (B, T, C) encoder features at the mesh fps; subject (B,) long; templates (B, V, 3);
        face_idx (P,), bary (P, 3), uv (P, 2) from the sampler; mask (B, T) True on real frames.
        Returns (B, T, P, 3) in *motion units* (divide the dataset-unit truth by ``motion_scale``).
        """
        g, tokens = self.encode_geometry(templates)
        point_part = self.regressor.point_part(self.point_features(g, face_idx, bary, uv))
        frame_part = self.frame_part(audio, subject, tokens, mask)
        if self.eye is None:
            return self.regressor(point_part, frame_part)
        return self.decode(self.regressor.prepare_points(point_part), frame_part, self.eye_weight_at(face_idx, bary))

    @torch.no_grad()
    def predict_vertices(self, audio, subject, templates=None, mask=None, chunk_frames: int = 32) -> torch.Tensor:
        """Inference path: per-vertex displacement in the dataset unit.

        audio (B, T, C) encoder features at ``config.fps``; subject (B,) long (UNSEEN_SUBJECT for the mean
        style); templates (B, V, 3) or None (the subject's training template, else the neutral one).
        Returns displacements (B, T, V, 3); add the template to get vertex positions. Frames are decoded
        ``chunk_frames`` at a time, so memory stays at B × chunk × V × H.
        """
        if templates is None:
            templates = self.templates_for(subject)
        g, tokens = self.encode_geometry(templates)
        point_part = self.regressor.prepare_points(self.regressor.point_part(self.vertex_features(g)))  # once per mesh
        frame_part = self.frame_part(audio, subject, tokens, mask)  # (B, T, H[·2])
        eye_weight = self.eye_weight if self.eye is not None else None
        out = [self.decode(point_part, frame_part[:, s : s + chunk_frames], eye_weight) for s in range(0, frame_part.shape[1], chunk_frames)]
        return torch.cat(out, dim=1) * self.motion_scale

    def templates_for(self, subject: torch.Tensor) -> torch.Tensor:
        """subject (B,) -> templates (B, V, 3): the training template of a known subject, else the neutral one."""
        known = self.subject_templates[subject.clamp_min(0)]
        return torch.where((subject >= 0).view(-1, 1, 1), known, self.template.expand_as(known))
