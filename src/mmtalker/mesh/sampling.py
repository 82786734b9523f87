"""A learnable, non-uniform, unbiased sampler of surface points for the reconstruction loss.

The loss we want is the mean of a per-point loss ℓ over the surface S under a measure that gives face f
the share p_f (by default its share of the 3D area, p_f = A_f / Σ_g A_g; see the choice below),

    L = Σ_f p_f · E_{x ~ U(f)}[ℓ(x)]        (= (1/|S|) ∫_S ℓ(x) dA for the area measure),

where U(f) is the uniform distribution on face f. Instead of sampling faces with p, we sample them with
a learnable proposal

    q_f = (1 − ε) · softmax(θ)_f + ε · p_f                        (θ: one logit per face, ε = uniform_mix)

and a uniform point inside the face (barycentrics by the square-root trick; uniform in 3D and in UV alike,
since the face's UV→3D map is affine). Each point gets the importance weight w = p_f / q_f, and

    L̂ = (1/n) Σ_i w_i ℓ(x_i)   satisfies   E_q[L̂] = Σ_f q_f (p_f/q_f) E_{U(f)}[ℓ] = L   for every θ.

The mix with p (a uniform share of samples over the surface) keeps every face alive and bounds the
weights: w ≤ 1/ε. (*Choice*: p is a share of the 3D surface, never of the UV chart, where a stretched
chart would count more.) Two measures of the surface are offered (:data:`MEASURES`):

- ``"area"``: p_f = A_f / Σ_g A_g, the surface's own area: every square millimetre counts alike.
- ``"vertices"``: each mesh vertex holds mass 1/V, spread over the faces around it in proportion to their
  areas: p_f = (1/V) Σ_{v ∈ f} A_f / A_star(v), where A_star(v) is the area of the faces at v. The loss is
  then the surface's estimate of the *per-vertex* mean that the metrics (LVE, EVE, MVE) take, so it weighs
  each region as densely as the mesh's authors placed vertices there (FLAME and the synthetic face are
  densest at the lips and eyelids), while its points still fall anywhere on the surface.

Training θ. L̂'s mean does not depend on θ, its variance does: Var = (M(θ) − L²)/n with the second moment

    M(θ) = E_q[w² ℓ²] = Σ_f p_f² m_f / q_f,         m_f = E_{U(f)}[ℓ²].

Its gradient is ∇M = −Σ_f p_f² m_f ∇q_f / q_f² = E_q[−w² ℓ² ∇log q]. If ``w`` is computed from q with
autograd (as :meth:`NonUniformSampler.sample` does) and ℓ is detached, then ∇_θ(½ w² ℓ²) = w ℓ² ∇w =
−w² ℓ² ∇log q (∇w = −w ∇log q): the gradient of the sample mean of ½ w² ℓ² is an unbiased estimate of
∇M. (Its value estimates ½M; the ½ cancels the 2 of ∇w², since no score term is added for the
dependence of the sampling on θ.)
:func:`variance_loss` returns it, divided by the detached L̂² so that its scale does not depend on the
loss units (the direction of the gradient is unchanged). The optimum q_f ∝ p_f √m_f puts samples where
the error is large (lips, eyelids) while L̂ stays unbiased.

How to use it in training::

    pts = sampler.sample(n)                        # pts.weight carries the gradient to θ
    loss_i = per_point_loss(pts)                   # (..., n), e.g. frames × points
    recon = importance_mean(pts.weight, loss_i)    # unbiased estimate, gradient to the model only
    total = recon + variance_loss(pts.weight, loss_i)   # the second term trains θ only

Shapes: F faces, P (= n) points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmtalker.mesh.uv import UVMap


@dataclass
class SampledPoints:
    """Points drawn by :meth:`NonUniformSampler.sample`.

    Attributes:
        face_idx: (P,) int64 face of each point (index into ``uvmap.faces`` / ``faces_uv``).
        bary: (P,3) float32 barycentric coordinates in that face.
        uv: (P,2) float32 UV coordinates of the points.
        weight: (P,) float32 importance weights p_f/q_f (differentiable w.r.t. the sampler's logits).
    """

    face_idx: torch.Tensor
    bary: torch.Tensor
    uv: torch.Tensor
    weight: torch.Tensor


MEASURES = ("area", "vertices")
"""The surface measures the loss can integrate over (the module docstring says what each means)."""


def face_measure(face_area: np.ndarray, faces: np.ndarray, measure: str = "area") -> np.ndarray:
    """(F,) float64 share p_f of each face under ``measure`` (sums to 1); see :data:`MEASURES`.

    Args:
        face_area: (F,) 3D area of each face.
        faces: (F,3) mesh faces (vertex indices).
        measure: ``"area"`` or ``"vertices"``.
    """
    area = np.asarray(face_area, dtype=np.float64)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("the mesh has no surface area to sample")
    if measure == "area":
        return area / area.sum()
    if measure == "vertices":
        faces = np.asarray(faces, dtype=np.int64)
        star = np.bincount(faces.ravel(), weights=np.repeat(area, 3), minlength=int(faces.max()) + 1)  # A_star(v)
        used = star > 0
        share = np.where(used[faces], area[:, None] / np.where(used, star, 1.0)[faces], 0.0).sum(1)  # Σ_v A_f/A_star(v)
        return share / share.sum()
    raise ValueError(f"unknown surface measure {measure!r}; use one of {', '.join(MEASURES)}")


def vertex_points(faces: torch.Tensor, num_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each vertex as a surface point: (V,) the index of a face that holds it, (V, 3) barycentric
    coordinates in that face (1 at the vertex's corner)."""
    flat = faces.reshape(-1).long()  # corner j of face i at 3i + j
    order = torch.argsort(flat, stable=True)
    first = torch.ones_like(flat, dtype=torch.bool)
    first[1:] = flat[order][1:] != flat[order][:-1]
    face_of = torch.full((num_vertices,), -1, dtype=torch.long)
    corner_of = torch.zeros(num_vertices, dtype=torch.long)
    face_of[flat[order][first]] = order[first] // 3  # each vertex's first face
    corner_of[flat[order][first]] = order[first] % 3
    if (face_of < 0).any():
        raise ValueError(f"{int((face_of < 0).sum())} vertices lie in no face")
    return face_of, torch.nn.functional.one_hot(corner_of, 3).float()


def uniform_barycentrics(n: int, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """(n,3) barycentrics uniform over a triangle (square-root trick)."""
    r = torch.rand(n, 2, generator=generator, device=device, dtype=dtype)
    s = r[:, 0].sqrt()
    return torch.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], dim=1)


class NonUniformSampler(nn.Module):
    """Samples surface points with a learnable per-face proposal; see the module docstring.

    Args:
        uvmap: the mesh's :class:`~mmtalker.mesh.uv.UVMap` (faces, UVs and 3D face areas).
        uniform_mix: ε, the share of the proposal spread over the surface by the measure (0 < ε ≤ 1);
            the importance weights are at most 1/ε.
        measure: the surface measure p the loss integrates over, ``"area"`` or ``"vertices"``
            (:data:`MEASURES`).

    Attributes:
        logits: (F,) nn.Parameter θ, initialised to log p so that q = p at the start (all weights 1).
        uniform_mix: ε, a plain float that a schedule may change between steps (e.g. 1.0 for a coarse
            uniform warm-up, then lower once the logits have learned where the error is).
    """

    def __init__(self, uvmap: UVMap, uniform_mix: float = 0.2, measure: str = "area"):
        super().__init__()
        if not 0.0 < uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must be in (0, 1], got {uniform_mix}")
        self.uniform_mix = float(uniform_mix)
        self.measure = measure
        target = torch.as_tensor(face_measure(uvmap.face_area, uvmap.faces, measure)).float()
        self.register_buffer("target", target, persistent=False)  # (F,) p_f
        self.register_buffer("faces_uv", torch.as_tensor(uvmap.faces_uv, dtype=torch.long), persistent=False)  # (F,3)
        self.register_buffer("mesh_faces", torch.as_tensor(uvmap.faces, dtype=torch.long), persistent=False)  # (F,3)
        self.register_buffer("uv_points", torch.as_tensor(uvmap.uv, dtype=torch.float32), persistent=False)  # (U,2)
        self.logits = nn.Parameter(target.clamp_min(1e-12).log())

    @property
    def num_faces(self) -> int:
        return self.target.shape[0]

    def face_probabilities(self) -> torch.Tensor:
        """(F,) the proposal q (differentiable w.r.t. ``logits``)."""
        eps = self.uniform_mix
        return (1 - eps) * torch.softmax(self.logits, dim=0) + eps * self.target

    def weights_for(self, face_idx: torch.Tensor) -> torch.Tensor:
        """(P,) importance weights p_f / q_f of points in faces ``face_idx`` (P,)."""
        q = self.face_probabilities()
        return self.target[face_idx] / q[face_idx]

    def sample(self, n: int, generator: torch.Generator | None = None) -> SampledPoints:
        """Draw n points: faces from q, barycentrics uniform in the face. See :class:`SampledPoints`."""
        q = self.face_probabilities()
        device = self.logits.device
        # draw where the generator lives (training's point generator is a CPU one, so a run draws the
        # same points on a CPU and on a GPU), then move the draws to the sampler's device
        at = generator.device if generator is not None else device
        face_idx = torch.multinomial(q.detach().to(at), n, replacement=True, generator=generator).to(device)
        bary = uniform_barycentrics(n, generator=generator, device=at, dtype=self.uv_points.dtype).to(device)
        corners = self.uv_points[self.faces_uv[face_idx]]  # (P,3,2)
        uv = torch.einsum("pk,pkc->pc", bary, corners)
        weight = self.target[face_idx] / q[face_idx]
        return SampledPoints(face_idx, bary, uv, weight)

    @torch.no_grad()
    def density_per_region(self, region_vertex_idx) -> float:
        """Proposal mass of a region relative to its share of the measure p (1 = as the measure spreads it).

        Args:
            region_vertex_idx: (K,) vertex indices; the region is the faces whose three vertices are all in it.
        Returns:
            Σ_region q_f / Σ_region p_f.
        """
        faces = self._mesh_faces_mask(region_vertex_idx)
        q = self.face_probabilities()
        return float(q[faces].sum() / self.target[faces].sum().clamp_min(1e-30))

    def _mesh_faces_mask(self, region_vertex_idx) -> torch.Tensor:
        inside = torch.zeros(int(self.mesh_faces.max()) + 1, dtype=torch.bool, device=self.mesh_faces.device)
        inside[torch.as_tensor(np.asarray(region_vertex_idx), dtype=torch.long, device=inside.device)] = True
        mask = inside[self.mesh_faces].all(1)
        if not mask.any():
            raise ValueError("the region contains no whole face")
        return mask


def importance_mean(weight: torch.Tensor, per_point_loss: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of the mean loss under the sampler's measure: mean(w.detach() · ℓ) over all elements.

    Args:
        weight: (P,) importance weights from :meth:`NonUniformSampler.sample`.
        per_point_loss: (..., P) loss of each point (leading dims, e.g. frames, are averaged too).
    Returns:
        scalar; its gradient reaches the model through ℓ, never the sampler's logits.
    """
    return (weight.detach() * per_point_loss).mean()


def variance_loss(weight: torch.Tensor, per_point_loss: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """Surrogate whose gradient w.r.t. the sampler's logits trains the proposal to minimise the variance
    of :func:`importance_mean` (see the module docstring).

    Args:
        weight: (P,) importance weights, differentiable w.r.t. the logits.
        per_point_loss: (..., P) per-point loss; leading dims are averaged first (the estimate's term for
            point i is w_i · mean over frames of ℓ_i); detached here, so the model gets no gradient.
        normalize: divide by the detached squared estimate, making the objective unit-free.
    Returns:
        scalar ½ mean_i(w_i² ℓ_i²) [/ L̂²].
    """
    loss = per_point_loss.detach()
    loss = loss.reshape(-1, loss.shape[-1]).mean(0)  # (P,)
    surrogate = 0.5 * (weight**2 * loss**2).mean()
    if normalize:
        estimate = (weight.detach() * loss).mean()
        surrogate = surrogate / (estimate**2 + 1e-30)
    return surrogate
