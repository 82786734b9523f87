"""The learnable non-uniform sampler (mmtalker.mesh.sampling): unbiasedness, learning, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.mesh.io import Mesh
from mmtalker.mesh.sampling import NonUniformSampler, face_measure, importance_mean, uniform_barycentrics, variance_loss
from mmtalker.mesh.uv import barycentric_interpolate, face_areas, parameterize


def grid_mesh(n=12, bump=0.2, seed=0):
    """An n×n grid of unit squares (two triangles each) on a jittered, bent sheet: uneven face areas."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(n + 1, dtype=float), np.arange(n + 1, dtype=float), indexing="ij")
    x += rng.uniform(-0.3, 0.3, x.shape) * (0 < x) * (x < n)
    y += rng.uniform(-0.3, 0.3, y.shape) * (0 < y) * (y < n)
    z = bump * np.sin(x / n * np.pi) * y
    verts = np.stack([x, y, z], -1).reshape(-1, 3) / n
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return Mesh(verts, faces)


def per_point_loss(mesh, face_loss, face_idx, bary):
    """ℓ(x) = c_f + x·a: a per-face constant plus a linear function of the 3D position (exact mean known)."""
    pos = barycentric_interpolate(torch.tensor(mesh.vertices, dtype=torch.float64), mesh.faces, face_idx, bary.double())
    return torch.tensor(face_loss)[face_idx] + pos @ torch.tensor([0.3, 0.2, 0.5], dtype=torch.float64)


def exact_mean(mesh, face_loss):
    """Dense area-weighted mean of per_point_loss: the face mean of a linear function is its centroid value."""
    area = face_areas(mesh.vertices, mesh.faces)
    centroid = mesh.vertices.astype(np.float64)[mesh.faces].mean(1)
    return float((area * (face_loss + centroid @ [0.3, 0.2, 0.5])).sum() / area.sum())


def test_sample_shapes_and_geometry():
    mesh = grid_mesh()
    uvmap = parameterize(mesh)
    sampler = NonUniformSampler(uvmap, uniform_mix=0.3)
    pts = sampler.sample(500, generator=torch.Generator().manual_seed(0))
    assert pts.face_idx.shape == (500,) and pts.bary.shape == (500, 3) and pts.uv.shape == (500, 2) and pts.weight.shape == (500,)
    assert (pts.bary >= 0).all() and torch.allclose(pts.bary.sum(1), torch.ones(500))
    corners = torch.tensor(uvmap.uv)[torch.tensor(uvmap.faces_uv)[pts.face_idx]]
    assert_close(pts.uv.numpy(), np.einsum("pk,pkc->pc", pts.bary.numpy(), corners.numpy()), atol=1e-6, what="uv")
    # at initialisation q = p: every weight is 1; the same generator seed gives the same points
    assert_close(pts.weight.detach().numpy(), np.ones(500), atol=1e-5, what="initial weights")
    again = sampler.sample(500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.face_idx, pts.face_idx) and torch.equal(again.bary, pts.bary)
    q = sampler.face_probabilities()
    assert q.shape == (len(mesh.faces),) and torch.isclose(q.sum(), torch.tensor(1.0))
    # a schedule may set the mix: ε = 1 samples by area alone whatever the logits
    with torch.no_grad():
        sampler.logits.normal_()
    sampler.uniform_mix = 1.0
    assert_close(sampler.sample(50).weight.detach().numpy(), np.ones(50), atol=1e-5, what="weights at ε = 1")
    # the buffers are derived from the map, so they stay out of checkpoints
    assert list(sampler.state_dict()) == ["logits"]


def test_uniform_barycentrics_are_uniform():
    b = uniform_barycentrics(200_000, generator=torch.Generator().manual_seed(1))
    # uniform on the triangle: each coordinate has mean 1/3 and the density of b0 is 2(1 − b0)
    assert_close(b.mean(0).numpy(), np.full(3, 1 / 3), atol=3e-3, what="mean")
    hist = np.histogram(b[:, 0].numpy(), bins=5, range=(0, 1))[0] / len(b)
    edges = np.linspace(0, 1, 6)
    assert_close(hist, (1 - edges[:-1]) ** 2 - (1 - edges[1:]) ** 2, atol=4e-3, what="b0 histogram")


@pytest.mark.parametrize("seed", [0, 1])
def test_unbiased_for_random_logits(seed):
    mesh = grid_mesh(seed=seed)
    sampler = NonUniformSampler(parameterize(mesh), uniform_mix=0.1)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sampler.logits.copy_(2.0 * torch.randn(sampler.num_faces, generator=gen))
    rng = np.random.default_rng(seed)
    face_loss = rng.gamma(1.0, 1.0, len(mesh.faces))
    exact = exact_mean(mesh, face_loss)
    # many independent estimates of n = 256 points each
    estimates = []
    for _ in range(400):
        pts = sampler.sample(256, generator=gen)
        estimates.append(float(importance_mean(pts.weight, per_point_loss(mesh, face_loss, pts.face_idx, pts.bary))))
    estimates = np.array(estimates)
    stderr = estimates.std() / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * stderr, (estimates.mean(), exact, stderr)
    assert stderr < 0.02 * exact  # the test has power: a 10% bias would be caught


def test_face_measure_by_hand():
    # two triangles sharing the edge 1-2, areas 1 and 3: vertex 0 gives its 1/4 to face 0, vertex 3 to
    # face 1, vertices 1 and 2 split theirs 1 : 3
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    area = np.array([1.0, 3.0])
    assert_close(face_measure(area, faces, "area"), [0.25, 0.75], atol=1e-12, what="area measure")
    assert_close(face_measure(area, faces, "vertices"), [(1 + 2 * 0.25) / 4, (1 + 2 * 0.75) / 4], atol=1e-12, what="vertex measure")
    # a vertex no face uses holds no mass; a degenerate face gets none; unknown measures are refused
    assert_close(face_measure(np.array([1.0, 0.0]), np.array([[0, 1, 2], [0, 1, 4]]), "vertices"), [1.0, 0.0], atol=1e-12, what="zero-area face")
    with pytest.raises(ValueError, match="unknown surface measure 'volume'"):
        face_measure(area, faces, "volume")
    with pytest.raises(ValueError, match="no surface area"):
        face_measure(np.zeros(2), faces, "vertices")


def test_vertex_measure_follows_vertex_density():
    # a sheet whose right half has 4x the vertices per unit area: by area each half holds 1/2, by vertices
    # the dense half holds about its share of the vertices
    mesh = grid_mesh(n=16, bump=0.0, seed=0)
    x = mesh.vertices[:, 0].copy()
    mesh.vertices[:, 0] = np.where(x < 0.5, x * 0.4 / 0.5, 0.4 + (x - 0.5) * 0.6 / 0.5)  # squeeze the left half
    uvmap = parameterize(mesh)
    left = mesh.vertices[mesh.faces].mean(1)[:, 0] < 0.4
    by_area = face_measure(uvmap.face_area, uvmap.faces, "area")
    by_vertex = face_measure(uvmap.face_area, uvmap.faces, "vertices")
    assert_close(by_area[left].sum(), 0.4, atol=0.01, what="area share of the squeezed half")  # the grid is jittered
    assert_close(by_vertex[left].sum(), 0.5, atol=0.02, what="vertex share of the squeezed half")
    sampler = NonUniformSampler(uvmap, uniform_mix=0.5, measure="vertices")
    pts = sampler.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert_close(float(left[pts.face_idx.numpy()].mean()), 0.5, atol=0.02, what="sampled share")
    assert_close(pts.weight.detach().numpy(), np.ones(20_000), atol=1e-5, what="weights at q = p")


def region_faces(mesh, vertex_idx):
    inside = np.zeros(len(mesh.vertices), bool)
    inside[vertex_idx] = True
    return inside[mesh.faces].all(1)


def test_training_moves_samples_to_the_lips_and_stays_unbiased():
    torch.manual_seed(0)
    mesh = grid_mesh(n=16)
    v = mesh.vertices
    lips = np.flatnonzero((np.abs(v[:, 0] - 0.5) < 0.3) & (np.abs(v[:, 1] - 0.3) < 0.1))  # a band
    cheeks = np.flatnonzero(v[:, 1] > 0.6)
    face_loss = np.where(region_faces(mesh, lips), 10.0, 1.0)
    sampler = NonUniformSampler(parameterize(mesh), uniform_mix=0.2)
    gen = torch.Generator().manual_seed(0)

    def estimates(repeats=200, n=256):
        out = []
        for _ in range(repeats):
            pts = sampler.sample(n, generator=gen)
            out.append(float(importance_mean(pts.weight, per_point_loss(mesh, face_loss, pts.face_idx, pts.bary))))
        return np.array(out)

    before = estimates()
    assert abs(sampler.density_per_region(lips) / sampler.density_per_region(cheeks) - 1) < 1e-5
    opt = torch.optim.Adam(sampler.parameters(), lr=0.05)
    for _ in range(300):
        pts = sampler.sample(256, generator=gen)
        loss = per_point_loss(mesh, face_loss, pts.face_idx, pts.bary)
        opt.zero_grad()
        variance_loss(pts.weight, loss).backward()
        opt.step()
    ratio = sampler.density_per_region(lips) / sampler.density_per_region(cheeks)
    print(f"lips/cheeks density {ratio:.2f}")
    assert ratio >= 3.0, ratio
    after = estimates()
    print(f"estimator variance {before.var():.4g} -> {after.var():.4g}")
    exact = exact_mean(mesh, face_loss)
    assert abs(after.mean() - exact) < 4 * after.std() / np.sqrt(len(after))
    assert after.var() < 0.1 * before.var(), (after.var(), before.var())


def test_variance_gradient_matches_finite_differences():
    """E_q[∇ variance_loss] (exact, enumerating faces) = ∇M(θ), M = Σ p_f² ℓ_f² / q_f (per-face constant ℓ)."""
    mesh = grid_mesh(n=2)
    sampler = NonUniformSampler(parameterize(mesh), uniform_mix=0.25).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sampler.logits.copy_(torch.randn(sampler.num_faces, generator=gen, dtype=torch.float64))
    ell = torch.rand(sampler.num_faces, generator=gen, dtype=torch.float64) + 0.1
    faces = torch.arange(sampler.num_faces)
    q = sampler.face_probabilities().detach()
    # each face once, its loss scaled so that the mean over faces is the q-weighted expectation
    surrogate = variance_loss(sampler.weights_for(faces), ell * (len(faces) * q).sqrt(), normalize=False)
    (grad,) = torch.autograd.grad(surrogate, sampler.logits)

    def second_moment(theta):
        eps, p = sampler.uniform_mix, sampler.target
        q = (1 - eps) * torch.softmax(theta, 0) + eps * p
        return (p**2 * ell**2 / q).sum()

    theta = sampler.logits.detach().clone()
    h = 1e-6
    fd = torch.stack([(second_moment(theta + h * e) - second_moment(theta - h * e)) / (2 * h)
                      for e in torch.eye(len(theta), dtype=torch.float64)])
    assert_close(grad.numpy(), fd.numpy(), atol=1e-8, rtol=1e-5, what="∇ second moment")
    # the sampled surrogate's value estimates ½M
    values = [variance_loss(p.weight, ell[p.face_idx], normalize=False).item()
              for p in (sampler.sample(400, generator=gen) for _ in range(200))]
    assert abs(np.mean(values) - 0.5 * float(second_moment(theta))) < 4 * np.std(values) / np.sqrt(len(values))


def test_gradients_go_where_they_should():
    mesh = grid_mesh(n=4)
    sampler = NonUniformSampler(parameterize(mesh))
    pts = sampler.sample(64, generator=torch.Generator().manual_seed(0))
    model_param = torch.ones(1, requires_grad=True)
    loss = model_param * (pts.uv ** 2).sum(1)
    importance_mean(pts.weight, loss).backward(retain_graph=True)
    assert sampler.logits.grad is None and model_param.grad is not None
    model_param.grad = None
    variance_loss(pts.weight, loss).backward()
    assert sampler.logits.grad is not None and sampler.logits.grad.abs().sum() > 0 and model_param.grad is None
    # leading dims (frames) are averaged: (T, P) gives the same as its frame mean
    two = torch.stack([loss, 3 * loss]).detach()
    assert torch.isclose(variance_loss(pts.weight, two), variance_loss(pts.weight, 2 * loss.detach()))
    with pytest.raises(ValueError):
        NonUniformSampler(parameterize(mesh), uniform_mix=0.0)
