"""Layers shared by the models: Fourier features, temporal convolutions, attention pooling, cross-attention.

Shapes: ``B`` batch, ``T`` frames, ``K`` tokens, ``D`` model width. A frame mask is a bool tensor (B, T)
that is True on real frames and False on padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FourierFeatures(nn.Module):
    """Map points u in [0,1]^2 (…, 2) to [u, sin(2^k π u), cos(2^k π u)] for k < num_frequencies.

    Output (…, 2 + 4·num_frequencies). With 0 frequencies it returns u itself.
    """

    def __init__(self, num_frequencies: int):
        super().__init__()
        freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)
        self.out_dim = 2 + 4 * num_frequencies

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.freqs.numel() == 0:
            return u
        angles = (u.unsqueeze(-1) * self.freqs).flatten(-2)  # (…, 2·nf)
        return torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=-1)


class UVFeatureGrid(nn.Module):
    """Learned feature maps over the UV square, read bilinearly: u (…, 2) in [0, 1]² -> (…, C·len(resolutions)).

    One (C, R, R) map per resolution R. Fourier features give smooth functions of u; a grid gives detail at
    the scale of one cell (1/R of the UV square) wherever the training points put it, e.g. along an eyelid.
    Still a function of u: any mesh sharing the UV layout reads it.
    """

    def __init__(self, resolutions: list[int], channels: int):
        super().__init__()
        self.maps = nn.ParameterList(nn.Parameter(torch.zeros(1, channels, r, r)) for r in resolutions)
        self.out_dim = channels * len(resolutions)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        lead = u.shape[:-1]
        grid = (u.reshape(1, -1, 1, 2) * 2 - 1).to(self.maps[0].dtype)  # grid_sample's [-1, 1], (x, y) = (u, v)
        out = [F.grid_sample(m, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, :, 0].T
               for m in self.maps]  # each (N, C)
        return torch.cat(out, dim=-1).reshape(*lead, self.out_dim)


class TemporalConvBlock(nn.Module):
    """Pre-norm residual 1-D convolution over time: x + Conv(GELU(Conv(LN(x)))), padding kept at zero.

    Input and output (B, T, D); ``dilation`` widens the receptive field without more weights.
    """

    def __init__(self, dim: int, kernel_size: int = 5, dilation: int = 1, dropout: float = 0.0):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.norm = nn.LayerNorm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=pad, dilation=dilation)
        self.conv2 = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)
        if mask is not None:
            h = h * mask.unsqueeze(-1)  # padding must not leak into real frames
        h = self.conv2(F.gelu(self.conv1(h.transpose(1, 2)))).transpose(1, 2)  # (B, T, D)
        return x + self.drop(h)


class AttentionPool(nn.Module):
    """Attention pooling over time: one learned query summarises (B, T, D) into (B, D), ignoring padding."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.score(x).squeeze(-1)  # (B, T)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        attn = torch.softmax(logits, dim=-1)  # (B, T)
        return self.proj(torch.einsum("bt,btd->bd", attn, x))


class FeedForward(nn.Module):
    """Pre-norm residual MLP: x + W2 GELU(W1 LN(x)); (…, D) -> (…, D)."""

    def __init__(self, dim: int, mult: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention, returning only the update (the caller adds the residual).

    query (B, Tq, D) attends to context (B, Tk, D); ``context_mask`` (B, Tk) True on real keys.
    Returns (B, Tq, D).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        kv = self.norm_kv(context)
        pad = None if context_mask is None else ~context_mask
        out, _ = self.attn(self.norm_q(query), kv, kv, key_padding_mask=pad, need_weights=False)
        return out


