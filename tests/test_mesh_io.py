"""mmtalker.mesh.io: vertex order kept, UVs per corner, exact round trips, clear errors, topology counts."""

from __future__ import annotations

import itertools
import shutil
import warnings

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.errors import MMTalkerError
from mmtalker.mesh.io import Mesh, boundary_edges, load_mesh, mesh_summary, save_mesh


def _obj_v_lines(path):
    return np.array([[float(x) for x in line.split()[1:4]] for line in open(path) if line.startswith("v ")])


# --------------------------------------------------------------------------------------------- fixtures


def test_flame_obj_counts_and_order(fixtures_dir):
    path = fixtures_dir / "meshes" / "flame_uv.obj"
    mesh = load_mesh(path)
    assert mesh.vertices.shape == (5023, 3) and mesh.vertices.dtype == np.float32
    assert mesh.faces.shape == (9976, 3) and mesh.faces.dtype == np.int64
    assert mesh.uv.shape == (5118, 2) and mesh.face_uv.shape == (9976, 3)
    assert mesh.path == str(path)
    assert_close(mesh.vertices, _obj_v_lines(path), atol=1e-7, what="vertices in v-line order")
    # first face line of the file: "f 4/1/4 2/2/2  1/3/1"
    assert mesh.faces[0].tolist() == [3, 1, 0] and mesh.face_uv[0].tolist() == [0, 1, 2]


def test_flame_obj_vertex_uv_is_first_corner(fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_uv.obj")
    vuv = mesh.vertex_uv()
    assert vuv.shape == (5023, 2) and np.all(np.isfinite(vuv))
    expected = {}
    for f in range(200):  # naive reference over the first faces
        for c in range(3):
            expected.setdefault(int(mesh.faces[f, c]), mesh.uv[mesh.face_uv[f, c]])
    for v, uv in expected.items():
        assert_close(vuv[v], uv, what=f"uv of vertex {v}")


def test_flame_ply_counts_and_summary(fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    assert mesh.vertices.shape == (5023, 3) and mesh.faces.shape == (9976, 3)
    assert mesh.uv is None
    summary = mesh_summary(mesh)
    assert summary["components"] == 3  # head and two eyeballs
    assert summary["boundary_loops"] == 2  # neck and open mouth; eyeballs are closed
    assert summary["has_uv"] is False and summary["uv_count"] == 0


def test_flame_obj_and_ply_share_topology(fixtures_dir):
    obj = load_mesh(fixtures_dir / "meshes" / "flame_uv.obj")
    ply = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    assert np.array_equal(obj.faces, ply.faces)
    s = mesh_summary(obj)
    assert (s["vertices"], s["faces"], s["components"], s["has_uv"], s["uv_count"]) == (5023, 9976, 3, True, 5118)


def test_ply_matches_trimesh_order(fixtures_dir):
    import trimesh

    path = fixtures_dir / "meshes" / "flame_sample.ply"
    ref = trimesh.load(path, process=False)
    mesh = load_mesh(path)
    assert_close(mesh.vertices, ref.vertices, atol=0, rtol=0, what="vertices")
    assert np.array_equal(mesh.faces, ref.faces)


# ------------------------------------------------------------------------------------------ round trips


def _random_mesh(rng, uv=True, seams=True) -> Mesh:
    V, F = 30, 40
    faces = np.array([rng.choice(V, 3, replace=False) for _ in range(F)])
    vertices = rng.normal(size=(V, 3)).astype(np.float32) * np.float32(0.1)
    if not uv:
        return Mesh(vertices, faces)
    U = V + 7 if seams else V
    face_uv = rng.integers(0, U, size=(F, 3)) if seams else faces.copy()
    return Mesh(vertices, faces, uv=rng.random((U, 2)), face_uv=face_uv)


@pytest.mark.parametrize("suffix,uv,seams", [(".obj", True, True), (".obj", False, False), (".ply", False, False), (".ply", True, False)])
def test_round_trip_exact(tmp_path, suffix, uv, seams):
    mesh = _random_mesh(np.random.default_rng(0), uv=uv, seams=seams)
    path = save_mesh(tmp_path / f"m{suffix}", mesh)
    back = load_mesh(path)
    assert np.array_equal(back.vertices, mesh.vertices)
    assert np.array_equal(back.faces, mesh.faces)
    if uv:
        assert np.array_equal(back.uv, mesh.uv) and np.array_equal(back.face_uv, mesh.face_uv)
    else:
        assert back.uv is None


def test_flame_obj_round_trip(tmp_path, fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_uv.obj")
    back = load_mesh(save_mesh(tmp_path / "f.obj", mesh))
    for name in ("vertices", "faces", "uv", "face_uv"):
        assert np.array_equal(getattr(back, name), getattr(mesh, name)), name
    ply = load_mesh(save_mesh(tmp_path / "f.ply", load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")))
    assert ply.vertices.shape == (5023, 3) and mesh_summary(ply)["components"] == 3


def test_ply_with_seams_warns_and_drops_uv(tmp_path):
    mesh = _random_mesh(np.random.default_rng(1), uv=True, seams=True)
    with pytest.warns(UserWarning, match="seams"):
        path = save_mesh(tmp_path / "m.ply", mesh)
    assert load_mesh(path).uv is None


def test_save_refuses_overwrite_and_unknown_suffix(tmp_path):
    mesh = _random_mesh(np.random.default_rng(2), uv=False)
    path = save_mesh(tmp_path / "m.obj", mesh)
    before = path.read_bytes()
    with pytest.raises(MMTalkerError, match="already exists"):
        save_mesh(path, mesh.copy_with(vertices=mesh.vertices * 2))
    assert path.read_bytes() == before
    save_mesh(path, mesh.copy_with(vertices=mesh.vertices * 2), overwrite=True)
    assert_close(load_mesh(path).vertices, mesh.vertices * 2, what="overwritten")
    with pytest.raises(MMTalkerError, match="unknown mesh file type"):
        save_mesh(tmp_path / "m.stl", mesh)


def test_copy_with_keeps_topology():
    mesh = _random_mesh(np.random.default_rng(3))
    moved = mesh.copy_with(vertices=mesh.vertices + 1)
    assert moved.faces is mesh.faces and moved.uv is mesh.uv
    with pytest.raises(ValueError):
        mesh.copy_with(vertices=np.zeros((3, 3)))


# ------------------------------------------------------------------------------------------- OBJ syntax


def _write(tmp_path, text, name="m.obj"):
    path = tmp_path / name
    path.write_text(text)
    return path


QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 0\n"


def test_obj_polygons_fan_triangulated_and_index_forms(tmp_path):
    text = QUAD + "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 0.5\n" + "f 1/1/1 2/2/1 3/3/1 4/4/1\nf -5/-5 -2/-2 -1/-1\n"
    mesh = load_mesh(_write(tmp_path, "# comment\no obj\ng grp\ns off\n" + text))
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    assert mesh.face_uv.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    assert mesh.uv.shape == (5, 2)


def test_obj_without_uv_and_vertex_normal_form(tmp_path):
    mesh = load_mesh(_write(tmp_path, QUAD + "vn 0 0 1\nf 1//1 2//1 3//1\nf 1 3 4\n"))
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]] and mesh.uv is None
    assert mesh_summary(mesh)["unreferenced_vertices"] == 1


def test_obj_mixed_uv_faces_warn(tmp_path):
    with pytest.warns(UserWarning, match="no texture coordinates"):
        mesh = load_mesh(_write(tmp_path, QUAD + "vt 0 0\nf 1/1 2/1 3/1\nf 1 3 4\n"))
    assert mesh.uv is None and mesh.faces.shape == (2, 3)


# ----------------------------------------------------------------------------------------------- errors

BAD_OBJS = {
    "no vertices": "# nothing\n",
    "no faces": "v 0 0 0\nv 1 0 0\nv 0 1 0\n",
    "NaN or infinite": "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
    "outside": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n",
    "index 0": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n",
    "at least 3 corners": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n",
    "needs 3 numbers": "v 0 0 0\nv 1 0\n",
    "not a number": "v 0 0 0\nv 1 x 0\n",
    "bad vertex index": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3.5\n",
    "texture-coordinate indices": "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n",
    "far outside": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999999\n",
}


@pytest.mark.parametrize("problem", BAD_OBJS)
def test_obj_errors_name_file_and_problem(tmp_path, problem):
    path = _write(tmp_path, BAD_OBJS[problem])
    with pytest.raises(MMTalkerError, match=problem) as err:
        load_mesh(path)
    assert str(path) in str(err.value)


def test_huge_coordinate_is_reported_not_warned(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MMTalkerError, match="NaN or infinite"):
            load_mesh(_write(tmp_path, "v 1e300 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"))


def test_binary_obj_and_missing_and_suffix(tmp_path, fixtures_dir):
    fake = tmp_path / "face.obj"
    shutil.copy(fixtures_dir / "meshes" / "flame_sample.ply", fake)
    with pytest.raises(MMTalkerError, match="binary"):
        load_mesh(fake)
    with pytest.raises(MMTalkerError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")
    with pytest.raises(MMTalkerError, match="unknown mesh file type"):
        load_mesh(_write(tmp_path, "v 0 0 0\n", name="m.stl"))
    with pytest.raises(MMTalkerError, match="folder"):
        load_mesh(tmp_path)


def test_ply_errors(tmp_path, fixtures_dir):
    data = (fixtures_dir / "meshes" / "flame_sample.ply").read_bytes()
    cut = tmp_path / "cut.ply"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MMTalkerError, match="cut.ply"):
        load_mesh(cut)
    with pytest.raises(MMTalkerError, match="not a PLY file"):
        load_mesh(_write(tmp_path, QUAD + "f 1 2 3\n", name="obj.ply"))
    points = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
    with pytest.raises(MMTalkerError, match="no faces"):
        load_mesh(_write(tmp_path, points, name="points.ply"))
    bad_index = points.replace("end_header", "element face 1\nproperty list uchar int vertex_indices\nend_header") + "3 0 1 7\n"
    with pytest.raises(MMTalkerError, match="outside"):
        load_mesh(_write(tmp_path, bad_index, name="bad.ply"))


def test_ascii_ply_with_uv_and_quad(tmp_path):
    text = (
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "property float s\nproperty float t\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0 0 0\n1 0 0 1 0\n1 1 0 1 1\n0 1 0 0 1\n4 0 1 2 3\n"
    )
    mesh = load_mesh(_write(tmp_path, text, name="quad.ply"))
    assert mesh.faces.shape == (2, 3) and sorted(set(mesh.faces.ravel().tolist())) == [0, 1, 2, 3]
    assert_close(mesh.vertex_uv(), mesh.vertices[:, :2], what="per-vertex uv")


# --------------------------------------------------------------------------------------------- topology


def _naive_boundary_loops(faces):
    """Walk the boundary edges by hand: count loops (each vertex on at most one loop here)."""
    count = {}
    for f in faces:
        for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            key = (min(a, b), max(a, b))
            count[key] = count.get(key, 0) + 1
    edges = [e for e, c in count.items() if c == 1]
    nbrs = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    seen, loops = set(), 0
    for start in nbrs:
        if start in seen:
            continue
        loops += 1
        stack = [start]
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(nbrs[v])
    return loops


def _grid(n):
    """An n x n grid of squares, two triangles each: a disk."""
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    faces = []
    for i, j in itertools.product(range(n), range(n)):
        a, b, c, d = idx[i, j], idx[i, j + 1], idx[i + 1, j + 1], idx[i + 1, j]
        faces += [(a, b, c), (a, c, d)]
    return np.array(faces)


def _verts(n):
    return np.zeros((n, 3), np.float32)


def test_summary_hand_made_cases():
    tri = Mesh(_verts(3), [[0, 1, 2]])
    assert mesh_summary(tri)["components"] == 1 and mesh_summary(tri)["boundary_loops"] == 1
    tet = Mesh(_verts(4), [[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    assert mesh_summary(tet)["boundary_loops"] == 0 and mesh_summary(tet)["components"] == 1
    grid = _grid(4)
    annulus = grid[[k for k in range(len(grid)) if k not in (10, 11)]]  # drop the square at (1,1): a hole
    s = mesh_summary(Mesh(_verts(25), annulus))
    assert s["boundary_loops"] == 2 and s["components"] == 1
    two = np.concatenate([tet.faces, tet.faces + 4, grid + 8])
    s = mesh_summary(Mesh(_verts(8 + 25 + 2), two))
    assert s["components"] == 3 and s["boundary_loops"] == 1 and s["unreferenced_vertices"] == 2


def test_boundary_against_naive(fixtures_dir):
    mesh = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    assert mesh_summary(mesh)["boundary_loops"] == _naive_boundary_loops(mesh.faces.tolist())
    b = boundary_edges(mesh.faces)
    assert b.shape[1] == 2 and np.all(b[:, 0] < b[:, 1])


def test_truncated_ascii_ply_is_not_a_smaller_mesh(tmp_path, fixtures_dir):
    """trimesh reads whatever an ASCII PLY holds; the header's counts must catch a cut file."""
    import trimesh

    ref = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    text = trimesh.exchange.ply.export_ply(trimesh.Trimesh(ref.vertices, ref.faces, process=False), encoding="ascii")
    full = tmp_path / "full.ply"
    full.write_bytes(text)
    assert load_mesh(full).faces.shape == (9976, 3)
    for frac in (0.3, 0.9, 0.999):
        cut = tmp_path / f"cut{frac}.ply"
        cut.write_bytes(text[: int(len(text) * frac)])
        with pytest.raises(MMTalkerError, match="header promises 5023 vertices and 9976 faces"):
            load_mesh(cut)
