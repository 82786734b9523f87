"""Retargeting helpers: barycentric coordinates, closest surface points, the UV map of a new mesh."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from fake_talk import grid_mesh
from mmtalker.errors import MMTalkerError
from mmtalker.inference.retarget import barycentric, build_retarget_map, closest_surface_points
from mmtalker.mesh.uv import parameterize


def test_barycentric_hand_computed_and_round_trip():
    a, b, c = (np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]]))
    assert_close(barycentric(np.array([[0.25, 0.25, 0]]), a, b, c), [[0.5, 0.25, 0.25]], what="hand case")
    rng = np.random.default_rng(0)
    A, B, C = (rng.standard_normal((50, 3)) for _ in range(3))
    w = rng.dirichlet([1, 1, 1], 50)
    points = w[:, :1] * A + w[:, 1:2] * B + w[:, 2:] * C
    assert_close(barycentric(points, A, B, C), w, atol=1e-7, what="random triangles")
    # a point outside is clamped into the triangle; a degenerate triangle gives its first corner
    assert_close(barycentric(np.array([[2.0, 0, 0]]), a, b, c), [[0, 1, 0]], what="clamped")
    assert_close(barycentric(a, a, a, a), [[1, 0, 0]], what="degenerate")


def test_closest_points_recover_points_on_and_off_a_flat_mesh():
    x, y = np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5))
    verts = np.stack([x.ravel(), y.ravel(), np.zeros(25)], 1)
    mesh = grid_mesh(5)
    rng = np.random.default_rng(1)
    face = rng.integers(0, len(mesh.faces), 40)
    w = rng.dirichlet([2, 2, 2], 40)
    on = (verts[mesh.faces[face]] * w[..., None]).sum(1)
    height = rng.uniform(-0.1, 0.1, 40)
    found = closest_surface_points(on + np.c_[0 * height, 0 * height, height], verts, mesh.faces)
    back = (verts[mesh.faces[found.face_idx]] * found.bary[..., None]).sum(1)
    assert_close(back, on, atol=1e-6, what="closest point")
    assert_close(found.distance, np.abs(height), atol=1e-6, what="distance")


def test_retarget_map_of_the_template_itself_is_the_identity():
    mesh = grid_mesh(6)
    uvmap = parameterize(mesh)
    m = build_retarget_map(mesh.vertices, mesh.faces, mesh.vertices, uvmap.faces, uvmap.vertex_uv)
    assert_close(m.uv, uvmap.vertex_uv, atol=1e-6, what="uv of the template's own vertices")
    assert_close(m.rest_on_checkpoint, mesh.vertices, atol=1e-6, what="rest shape on the checkpoint")
    with pytest.raises(MMTalkerError, match="does not lie"):
        build_retarget_map(mesh.vertices + np.float32([0, 0, 1]), mesh.faces, mesh.vertices, uvmap.faces, uvmap.vertex_uv)


def _seamed_grid(n=7, seam=3):
    """grid_mesh(n) with own UVs in two charts: the faces left of column ``seam`` map to u in [0, 0.4], those right
    of it to [0.6, 1], so the seam column's vertices have two UVs."""
    from mmtalker.mesh.io import Mesh

    mesh = grid_mesh(n)
    i, j = np.divmod(mesh.faces, n)  # (F, 3) row and column of each corner
    right = j.max(1) > seam
    u = np.where(right[:, None], 0.6 + 0.4 * (j - seam) / (n - 1 - seam), 0.4 * j / seam)
    corner = np.stack([u, i / (n - 1)], -1).astype(np.float32)  # (F, 3, 2)
    return Mesh(mesh.vertices, mesh.faces, corner.reshape(-1, 2), np.arange(3 * len(mesh.faces)).reshape(-1, 3)), corner


def test_retargeting_across_uv_seams_keeps_each_face_in_its_own_chart():
    mesh, corner = _seamed_grid()
    uvmap = parameterize(mesh)
    assert uvmap.method == "own"
    assert_close(uvmap.uv[uvmap.faces_uv], corner, atol=1e-6, what="the map's corner UVs")
    # the new mesh: every face split in three at its centroid
    F, V = len(mesh.faces), len(mesh.vertices)
    centroids = mesh.vertices[mesh.faces].mean(1)
    a, b, c = mesh.faces.T
    m = V + np.arange(F)
    new_faces = np.concatenate([np.stack([a, b, m], 1), np.stack([b, c, m], 1), np.stack([c, a, m], 1)])
    new_vertices = np.concatenate([mesh.vertices, centroids])
    args = (new_vertices, new_faces, mesh.vertices, uvmap.faces, uvmap.vertex_uv)
    seamed = build_retarget_map(*args, corner_uv=corner)
    assert_close(seamed.uv[V:], corner.mean(1), atol=1e-5, what="centroid UVs: their own face's chart")
    assert_close(seamed.uv[:V], uvmap.vertex_uv, atol=1e-6, what="old vertices keep their own UV")
    blended = build_retarget_map(*args)  # one UV per vertex: faces touching the seam blend two charts
    assert np.abs(blended.uv[V:] - corner.mean(1)).max() > 0.05
