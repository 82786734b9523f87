"""The template mesh as a graph, and a residual graph convolutional network over it.

``mesh_adjacency`` builds Â = D^{-1/2} (A + I) D^{-1/2} (Kipf & Welling), A the symmetric 0/1 vertex
adjacency of the mesh edges and D the degree of A + I; ``GraphConv`` is Â X W + b; ``ResidualGCN`` stacks
pre-normalised residual blocks x ← x + GraphConv(GELU(LayerNorm(x))) between an input and an output
projection, so that deep stacks stay well conditioned.

The adjacency is a sparse tensor passed to ``forward`` (not stored in the module: it derives from the
topology, not from training, and a checkpoint then holds only weights). Shapes: V vertices, C channels,
optional leading batch dims (B, ...).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mesh_adjacency(faces, num_vertices: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Symmetric normalised adjacency with self loops.

    Args:
        faces: (F,3) int vertex indices (numpy or torch).
        num_vertices: V (vertices no face uses get only their self loop).
    Returns:
        (V,V) sparse COO tensor Â, coalesced; Â[i,j] = 1/√(d_i d_j) for each mesh edge and i = j,
        d_i = 1 + number of neighbours of i.
    """
    f = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be (F,3), got {tuple(f.shape)}")
    if f.numel() and (f.min() < 0 or f.max() >= num_vertices):
        raise ValueError(f"faces index vertices outside [0, {num_vertices})")
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # (3F,2)
    edges = edges[edges[:, 0] != edges[:, 1]]
    loops = torch.arange(num_vertices).repeat(2, 1).T
    pairs = torch.cat([edges, edges.flip(1), loops])  # (E', 2), with repeats
    keys = torch.unique(pairs[:, 0] * num_vertices + pairs[:, 1])  # sorted, so the result is coalesced
    index = torch.stack([keys // num_vertices, keys % num_vertices])  # (2, E)
    degree = torch.bincount(index[0], minlength=num_vertices).to(torch.float64)
    values = (degree[index[0]] * degree[index[1]]).rsqrt()
    adj = torch.sparse_coo_tensor(index, values.to(dtype), (num_vertices, num_vertices), device=device,
                                  check_invariants=True)
    return adj.coalesce()


def propagate(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Â x for x of shape (..., V, C) with a sparse (V,V) Â: returns (..., V, C) in x's dtype.

    Half-precision x (under autocast) is propagated in float32 with autocast off: CUDA has no bf16 sparse
    product, and the CPU's fails in the backward pass.
    """
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if adj.dtype != compute:
        adj = adj.to(compute)
    lead, (v, c) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, v, c).permute(1, 0, 2).reshape(v, -1).to(compute)  # (V, B*C)
    with torch.autocast(x.device.type, enabled=False):  # autocast would hand the sparse product bf16 again
        out = torch.sparse.mm(adj, flat).to(x.dtype)
    return out.reshape(v, -1, c).permute(1, 0, 2).reshape(*lead, v, c)


class GraphConv(nn.Module):
    """Â X W + b: (..., V, in_dim) → (..., V, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        out = propagate(adj, self.linear(x))  # project first: fewer channels to propagate
        return out if self.bias is None else out + self.bias


class ResidualBlock(nn.Module):
    """x + GraphConv(GELU(LayerNorm(x))) on (..., V, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = GraphConv(dim, dim)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return x + self.conv(nn.functional.gelu(self.norm(x)), adj)


class ResidualGCN(nn.Module):
    """Per-vertex features from per-vertex inputs (e.g. template positions) over the mesh graph.

    Args:
        in_dim: input channels.
        hidden: width of the residual stream.
        out_dim: output channels.
        num_layers: residual graph-convolution blocks (each widens the receptive field by one ring).

    ``forward(x (..., V, in_dim), adj (V,V) sparse) -> (..., V, out_dim)``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        self.inp = GraphConv(in_dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = self.inp(x, adj)  # (..., V, hidden)
        for block in self.blocks:
            h = block(h, adj)
        return self.out(self.norm(h))  # (..., V, out_dim)
