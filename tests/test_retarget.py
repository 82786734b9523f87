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
