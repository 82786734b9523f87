"""Training losses for displacement fields sampled at UV points.

Shapes: ``B`` clips, ``T`` frames, ``P`` sampled points. ``pred`` and ``target`` are displacements
(B, T, P, 3) in motion units (dataset unit / motion_scale). ``weight`` (P,) are the sampler's importance
weights: mean(weight · loss_p) is an unbiased estimate of the area-weighted mean over the face surface.
``mask`` (B, T) is True on real frames. ``region_weight`` (P,) multiplies each point's loss (1 plus the
extra lip/eye weight, mixed barycentrically from the vertices).

The reconstruction terms use the importance weights *detached*, so the network sees an unbiased loss;
the sampler's logits are trained only by ``mmtalker.mesh.sampling.variance_loss``, which lowers that
estimate's variance (and so draws samples to where the error is large).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmtalker.errors import MMTalkerError


@dataclass
class LossWeights:
    """Weights of the loss terms (the ``loss`` section of a training config)."""

    reconstruction: float = 1.0
    velocity: float = 0.5  # temporal-difference term: keeps the motion as smooth/sharp as the truth
    lips: float = 1.0  # extra weight on lip vertices (0 = none); point weight 1 + lips·[lip]
    eyes: float = 0.5  # extra weight on eye-region vertices
    sampler: float = 0.1  # weight of the sampler's variance objective (trains only its logits)
    lip_max: float = 0.0  # weight of the per-frame worst lip vertex's squared error (LVE's own form; 0 = off)
    lip_max_points: int = 128  # lip vertices drawn per step for that maximum
    lip_region: str = "lips"  # region names in the dataset manifest
    eye_region: str = "eye_region"

    def check(self, where: str) -> None:
        """A weight below 0 would reward error (the strict config builder calls this)."""
        for key in ("reconstruction", "velocity", "lips", "eyes", "sampler", "lip_max"):
            if not getattr(self, key) >= 0:
                raise MMTalkerError(where, f"setting '{key}' must be 0 or more, got {getattr(self, key)}")
        if self.lip_max_points < 1:
            raise MMTalkerError(where, f"setting 'lip_max_points' must be 1 or more, got {self.lip_max_points}")


def _frame_mean(per_frame: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, T) over real frames."""
    if mask is None:
        return per_frame.mean()
    mask = mask.to(per_frame.dtype)
    return (per_frame * mask).sum() / mask.sum().clamp_min(1.0)


def point_errors(pred: torch.Tensor, target: torch.Tensor, region_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-point squared error (B, T, P), times ``region_weight`` (P,) when given."""
    err = ((pred - target) ** 2).sum(-1)
    return err if region_weight is None else err * region_weight


def reconstruction_loss(pred, target, weight, mask=None, region_weight=None) -> torch.Tensor:
    """Importance-weighted mean squared displacement error over the surface and real frames (scalar)."""
    per_frame = (point_errors(pred, target, region_weight) * weight.detach()).mean(-1)  # (B, T)
    return _frame_mean(per_frame, mask)


def velocity_loss(pred, target, weight, mask=None, region_weight=None) -> torch.Tensor:
    """Importance-weighted squared error of frame-to-frame differences (scalar); 0 when T = 1."""
    if pred.shape[1] < 2:
        return pred.sum() * 0.0
    dp, dt = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]
    pair_mask = None if mask is None else mask[:, 1:] & mask[:, :-1]
    per_pair = (point_errors(dp, dt, region_weight) * weight.detach()).mean(-1)  # (B, T-1)
    return _frame_mean(per_pair, pair_mask)


def frame_max_loss(pred, target, mask=None) -> torch.Tensor:
    """Per frame the largest squared error over the points (B, T, P, 3), averaged over real frames (scalar):
    LVE's form when the points are lip vertices."""
    return _frame_mean(point_errors(pred, target).amax(-1), mask)


def region_point_weight(vertex_weight: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Per-point weight (P,) as the barycentric mix of a per-vertex weight (V,)."""
    return (vertex_weight[faces[face_idx]] * bary).sum(-1)


def vertex_region_weight(num_vertices: int, regions: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """(V,) = 1 + Σ_region weight·[v in region]; regions maps names to vertex index tensors."""
    w = torch.ones(num_vertices)
    for name, idx in regions.items():
        w[idx] += weights.get(name, 0.0)
    return w
