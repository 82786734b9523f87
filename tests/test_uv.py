"""UV parameterization, point location and barycentric interpolation (mmtalker.mesh.uv)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from conftest import assert_close
from mmtalker.errors import MMTalkerError
from mmtalker.mesh.io import Mesh, load_mesh
from mmtalker.mesh.uv import UVLocator, barycentric_interpolate, locate, parameterize, signed_areas

# --------------------------------------------------------------------------------------- procedural meshes


def polar_disk(rings=8, sectors=24, hole=0.0, bump=0.3):
    """A disk (or an annulus when hole > 0) in the plane, bent into a cap: (Mesh, inner loop vertex ids)."""
    radii = np.linspace(hole, 1.0, rings + 1)
    verts, idx = [], {}
    start = 0
    if hole == 0.0:
        verts.append([0.0, 0.0, bump])
        idx[(0, 0)] = 0
        start = 1
    for r_i in range(start, rings + 1):
        for s in range(sectors):
            a = 2 * np.pi * s / sectors
            r = radii[r_i]
            idx[(r_i, s)] = len(verts)
            verts.append([r * np.cos(a), r * np.sin(a), bump * (1 - r * r)])
    faces = []
    for r_i in range(start, rings):
        for s in range(sectors):
            a, b = idx[(r_i, s)], idx[(r_i, (s + 1) % sectors)]
            c, d = idx[(r_i + 1, s)], idx[(r_i + 1, (s + 1) % sectors)]
            faces += [[a, c, d], [a, d, b]]
    if hole == 0.0:
        faces += [[0, idx[(1, s)], idx[(1, (s + 1) % sectors)]] for s in range(sectors)]
    inner = [idx[(0, s)] for s in range(sectors)] if hole > 0 else []
    return Mesh(np.array(verts), np.array(faces)), np.array(inner)


def contains(uv, faces_uv, point, tol=1e-9):
    """Naive: the indices of the UV triangles containing ``point``."""
    tri = uv.astype(np.float64)[faces_uv]
    hits = []
    for f, (a, b, c) in enumerate(tri):
        m = np.array([b - a, c - a]).T
        if abs(np.linalg.det(m)) < 1e-18:
            continue
        l1, l2 = np.linalg.solve(m, point - a)
        if min(l1, l2, 1 - l1 - l2) >= -tol:
            hits.append(f)
    return hits


def check_uvmap(mesh, uvmap):
    """Properties every map must have."""
    v, f = len(mesh.vertices), len(mesh.faces)
    assert uvmap.uv.shape[1] == 2 and uvmap.faces_uv.shape == (f, 3) and uvmap.vertex_uv.shape == (v, 2)
    assert np.isfinite(uvmap.uv).all() and uvmap.uv.min() >= 0 and uvmap.uv.max() <= 1
    assert (uvmap.uv_vertex[uvmap.faces_uv] == mesh.faces).all(), "uv_vertex must map each UV corner to its face vertex"
    assert uvmap.flipped == int((uvmap.uv_area() < 0).sum())
    areas = np.bincount(uvmap.face_chart, np.abs(uvmap.uv_area()))
    assert areas.min() > 0 and areas.argmax() == 0, "charts have area; chart 0 is the largest"


def assert_charts_apart(uvmap):
    """Computed maps pack charts side by side: their bounding boxes do not overlap."""
    boxes = []
    for c in range(uvmap.num_charts):
        pts = uvmap.uv[np.unique(uvmap.faces_uv[uvmap.face_chart == c])]
        boxes.append((pts.min(0), pts.max(0)))
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            overlap = np.minimum(boxes[i][1], boxes[j][1]) - np.maximum(boxes[i][0], boxes[j][0])
            assert (overlap <= 0).any(), f"charts {i} and {j} overlap"


# ----------------------------------------------------------------------------------------------- parameterize


def test_flame_ply_three_components_mouth_hole(fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.method == "harmonic"
    assert uvmap.flipped <= 1e-3 * len(mesh.faces)
    # the head is chart 0, each closed eyeball is cut into two disks
    head_vertices = np.unique(mesh.faces[uvmap.face_chart == 0])
    assert len(head_vertices) > 0.7 * len(mesh.vertices)
    assert uvmap.num_charts >= 3 and len(uvmap.uv) > len(mesh.vertices)
    assert_charts_apart(uvmap)
    # the mouth (the shorter boundary loop of the head) stays a hole: its UV centre is in no triangle
    edges = np.sort(mesh.faces[uvmap.face_chart == 0][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = uniq[counts == 1]
    loops = _loops(boundary)
    assert len(loops) == 2  # neck and mouth
    perimeter = [np.linalg.norm(mesh.vertices[lp] - mesh.vertices[np.roll(lp, -1)], axis=1).sum() for lp in loops]
    mouth = loops[int(np.argmin(perimeter))]
    centre = uvmap.vertex_uv[mouth].mean(0)
    assert contains(uvmap.uv, uvmap.faces_uv, centre) == []


def _loops(boundary_edges):
    """Vertex loops of a set of boundary edges (naive walk)."""
    todo, loops = set(np.unique(boundary_edges).tolist()), []
    while todo:
        start = cur = min(todo)
        loop, prev = [], None
        while True:
            loop.append(cur)
            todo.discard(cur)
            nxt = [b if a == cur else a for a, b in boundary_edges if cur in (a, b) and (b if a == cur else a) != prev]
            prev, cur = cur, nxt[0]
            if cur == start:
                break
        loops.append(np.array(loop))
    return loops


def test_flame_obj_own_uvs(fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_uv.obj")
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.method == "own" and uvmap.flipped == 0
    assert len(uvmap.uv) == 5118 and len(mesh.vertices) == 5023
    # the file's UVs are kept as they are (already inside [0,1]²), and each corner keeps its own UV
    assert_close(uvmap.uv[uvmap.faces_uv], mesh.uv[mesh.face_uv], what="corner uv")
    assert_close(uvmap.vertex_uv, mesh.vertex_uv(), what="vertex_uv = first corner's")
    computed = parameterize(mesh, "harmonic")
    check_uvmap(mesh, computed)
    assert computed.method == "harmonic"


def test_disk_harmonic_no_flips_boundary_on_circle():
    mesh, _ = polar_disk()
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.flipped == 0 and uvmap.num_charts == 1 and uvmap.chart_methods == ("harmonic",)
    rim = np.flatnonzero(np.isclose(np.linalg.norm(mesh.vertices[:, :2], axis=1), 1.0))
    lo, hi = uvmap.uv.min(0), uvmap.uv.max(0)
    dist = np.linalg.norm(uvmap.vertex_uv[rim] - (lo + hi) / 2, axis=1)
    assert_close(dist, np.full(len(rim), dist.mean()), atol=1e-5, what="rim radius")


def test_annulus_hole_stays_a_hole():
    mesh, inner = polar_disk(hole=0.3)
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.flipped == 0
    centre = uvmap.vertex_uv[inner].mean(0)
    assert contains(uvmap.uv, uvmap.faces_uv, centre) == []
    # the hole keeps a fair size: its UV area is not collapsed to nothing
    hole_area = abs(signed_areas(uvmap.vertex_uv[inner].astype(np.float64), np.array([[0, i, i + 1] for i in range(1, len(inner) - 1)])).sum())
    assert hole_area > 0.02 * np.abs(uvmap.uv_area()).sum()


def test_closed_sphere_is_cut_into_two_disks():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh = Mesh(sphere.vertices, sphere.faces)
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.num_charts == 2 and uvmap.flipped == 0
    assert len(uvmap.uv) > len(mesh.vertices)  # the cut vertices own two UVs
    assert_charts_apart(uvmap)
    # no two triangles overlap: random points lie in at most one triangle
    rng = np.random.default_rng(0)
    for p in rng.random((40, 2)):
        assert len(contains(uvmap.uv, uvmap.faces_uv, p, tol=-1e-9)) <= 1


def test_two_equal_disks_and_an_unused_vertex():
    disk, _ = polar_disk(rings=4, sectors=12)
    v, f = disk.vertices, disk.faces
    stray = np.array([[2.9, 0.0, 0.0]])  # no face uses it: it takes the UV of the nearest used vertex
    mesh = Mesh(np.vstack([v, v + [3.0, 0, 0], stray]), np.vstack([f, f + len(v)]))
    uvmap = parameterize(mesh)
    check_uvmap(mesh, uvmap)
    assert uvmap.num_charts == 2 and uvmap.flipped == 0
    assert_charts_apart(uvmap)
    nearest = np.argmin(np.linalg.norm(mesh.vertices[:-1] - stray, axis=1))
    assert_close(uvmap.vertex_uv[-1], uvmap.vertex_uv[nearest], what="stray vertex uv")


def test_synthetic_face_if_available():
    face_mod = pytest.importorskip("mmtalker.synth.face", reason="the synthetic face module has not landed")
    face = face_mod.load_default_face()
    uvmap = parameterize(face.mesh)
    check_uvmap(face.mesh, uvmap)
    assert uvmap.flipped <= 1e-3 * len(face.mesh.faces)


def test_errors():
    mesh, _ = polar_disk()
    with pytest.raises(MMTalkerError, match="no texture coordinates"):
        parameterize(mesh, "own")
    with pytest.raises(MMTalkerError, match="unknown UV method"):
        parameterize(mesh, "cylinder")
    flat = Mesh(mesh.vertices, mesh.faces, uv=np.zeros((len(mesh.vertices), 2)), face_uv=mesh.faces)
    with pytest.raises(MMTalkerError, match="degenerate UV map"):
        parameterize(flat)
    nan = Mesh(mesh.vertices, mesh.faces, uv=np.full((len(mesh.vertices), 2), np.nan), face_uv=mesh.faces)
    with pytest.raises(MMTalkerError, match="NaN"):
        parameterize(nan)
    scrambled = Mesh(mesh.vertices, mesh.faces, uv=np.random.default_rng(0).random((len(mesh.vertices), 2)), face_uv=mesh.faces)
    with pytest.raises(MMTalkerError, match="flipped"):
        parameterize(scrambled)
    planar = np.c_[mesh.vertices[:, 0], mesh.vertices[:, 1]] * 0.5 + 0.5
    mirrored = Mesh(mesh.vertices, mesh.faces, uv=planar * [-1, 1] + [1, 0], face_uv=mesh.faces)
    assert parameterize(mirrored).flipped == 0  # a chart mirrored as a whole is not flipped


# ---------------------------------------------------------------------------------------------------- locate


def naive_locate(uv, faces_uv, point):
    """Brute force, one point against every triangle: distance from the point to the map (0 inside)."""
    tri = uv.astype(np.float64)[faces_uv]  # (F,3,2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    ok = np.abs(det) > 1e-18
    rel = point - a
    l1 = np.where(ok, (rel[:, 0] * (c - a)[:, 1] - rel[:, 1] * (c - a)[:, 0]) / np.where(ok, det, 1), -1)
    l2 = np.where(ok, ((b - a)[:, 0] * rel[:, 1] - (b - a)[:, 1] * rel[:, 0]) / np.where(ok, det, 1), -1)
    if (ok & (np.minimum(np.minimum(l1, l2), 1 - l1 - l2) >= -1e-12)).any():
        return 0.0
    best = np.inf
    for p, q in ((a, b), (b, c), (c, a)):
        t = np.clip(((point - p) * (q - p)).sum(1) / np.maximum(((q - p) ** 2).sum(1), 1e-300), 0, 1)
        best = min(best, np.linalg.norm(p + t[:, None] * (q - p) - point, axis=1).min())
    return best


@pytest.mark.parametrize("which", ["disk", "flame_own"])
def test_locate_matches_naive(which, fixtures_dir):
    if which == "disk":
        mesh, _ = polar_disk(hole=0.3)
    else:
        mesh = load_mesh(fixtures_dir / "meshes" / "flame_uv.obj")
    uvmap = parameterize(mesh)
    rng = np.random.default_rng(1)
    # points inside triangles (known answer), random points anywhere (some in holes and gaps)
    f_true = rng.integers(0, len(mesh.faces), 100)
    b_true = rng.dirichlet(np.ones(3), 100)
    inside = np.einsum("pk,pkc->pc", b_true, uvmap.uv.astype(np.float64)[uvmap.faces_uv[f_true]])
    points = np.vstack([inside, rng.random((60, 2)) * 1.1 - 0.05])
    face_idx, bary = locate(uvmap, points)
    assert face_idx.shape == (160,) and bary.shape == (160, 3)
    assert (bary >= 0).all() and np.allclose(bary.sum(1), 1)
    where = np.einsum("pk,pkc->pc", bary, uvmap.uv.astype(np.float64)[uvmap.faces_uv[face_idx]])
    assert_close(where[:100], inside, atol=1e-7, what="inside points reconstructed")
    for p, point in enumerate(points):
        d_ref = naive_locate(uvmap.uv, uvmap.faces_uv, point)
        assert_close(np.linalg.norm(where[p] - point), d_ref, atol=1e-9, what=f"distance to map, point {p}")


def test_locator_reuse_and_clamped_outside():
    mesh, _ = polar_disk()
    locator = UVLocator(parameterize(mesh))
    f1, b1 = locator.locate([[0.5, 0.5], [-3.0, 0.5]])
    f2, b2 = locator.locate(np.array([[0.5, 0.5], [-3.0, 0.5]]))
    assert (f1 == f2).all() and np.allclose(b1, b2)
    assert (b1 >= 0).all() and np.isclose(b1[1].sum(), 1)


# ------------------------------------------------------------------------------------ barycentric interpolate


def naive_interpolate(values, faces, face_idx, bary):
    out = np.zeros(values.shape[:-2] + (len(face_idx), values.shape[-1]))
    for p, (f, b) in enumerate(zip(face_idx, bary)):
        for k in range(3):
            out[..., p, :] += b[k] * values[..., faces[f, k], :]
    return out


def test_barycentric_interpolate_numpy_and_torch():
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 20, (30, 3))
    values = rng.normal(size=(4, 20, 3))  # (T, V, C)
    face_idx = rng.integers(0, 30, 50)
    bary = rng.dirichlet(np.ones(3), 50)
    ref = naive_interpolate(values, faces, face_idx, bary)
    assert_close(barycentric_interpolate(values, faces, face_idx, bary), ref, what="numpy")
    got = barycentric_interpolate(torch.tensor(values), torch.tensor(faces), torch.tensor(face_idx), torch.tensor(bary))
    assert isinstance(got, torch.Tensor) and got.shape == (4, 50, 3)
    assert_close(got.numpy(), ref, what="torch")
    assert_close(barycentric_interpolate(values[0], faces, face_idx, bary), ref[0], what="no leading dims")
    # vertex positions: interpolating at a vertex corner gives the vertex
    one_hot = np.eye(3)[rng.integers(0, 3, 50)]
    corner = barycentric_interpolate(values, faces, face_idx, one_hot)
    assert_close(corner, values[:, faces[face_idx][one_hot.astype(bool)]], what="corners")


def test_barycentric_interpolate_gradient():
    rng = np.random.default_rng(3)
    faces = torch.tensor(rng.integers(0, 6, (5, 3)))
    values = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    face_idx = torch.tensor(rng.integers(0, 5, 7))
    bary = torch.tensor(rng.dirichlet(np.ones(3), 7))
    assert torch.autograd.gradcheck(lambda v: barycentric_interpolate(v, faces, face_idx, bary), (values,))


def test_barycentric_interpolate_rejects_bad_shapes():
    with pytest.raises(ValueError):
        barycentric_interpolate(np.zeros((3, 1)), np.zeros((1, 3), int), np.zeros(2, int), np.zeros((2, 2)))
