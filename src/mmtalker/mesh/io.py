"""Face meshes on disk: OBJ and PLY in, OBJ and PLY out, with the vertex order of the file kept.

Vertex order matters: dataset arrays ``(T, V, 3)`` index the template's vertices by position. trimesh's
OBJ loader splits vertices at UV seams (the FLAME OBJ comes back with 5118 vertices instead of its 5023
``v`` lines), so OBJ is read by the small parser below, which keeps one vertex per ``v`` line and the
texture coordinates (``vt``) as a separate table indexed per face corner. PLY is read through trimesh
with ``process=False``, which keeps order.

Every reader validates what it returns (finite coordinates, face indices in range, at least one face)
and raises :class:`~mmtalker.errors.MMTalkerError` naming the file otherwise.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError

SUFFIXES = (".obj", ".ply")
_HINT = "mmtalker reads triangle/polygon meshes as .obj or .ply"


@dataclass
class Mesh:
    """A polygon mesh, triangulated.

    Attributes:
        vertices: ``(V, 3)`` float32 positions, in the file's units, in the file's order.
        faces: ``(F, 3)`` int64 vertex indices (0-based) of each triangle.
        uv: ``(U, 2)`` float32 texture coordinates, or None. With UV seams a vertex owns several, so ``U >= V``.
        face_uv: ``(F, 3)`` int64 indices into ``uv`` for each triangle corner, or None (None exactly when ``uv`` is).
        path: the file it was read from, if any.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    face_uv: np.ndarray | None = None
    path: str | None = None

    def __post_init__(self):
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"Mesh.vertices must have shape (V, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"Mesh.faces must have shape (F, 3), got {self.faces.shape}")
        if (self.uv is None) != (self.face_uv is None):
            raise ValueError("Mesh.uv and Mesh.face_uv must be given together")
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, dtype=np.float32)
            self.face_uv = np.ascontiguousarray(self.face_uv, dtype=np.int64)
            if self.uv.ndim != 2 or self.uv.shape[1] != 2:
                raise ValueError(f"Mesh.uv must have shape (U, 2), got {self.uv.shape}")
            if self.face_uv.shape != self.faces.shape:
                raise ValueError(f"Mesh.face_uv must have the shape of faces {self.faces.shape}, got {self.face_uv.shape}")

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def vertex_uv(self) -> np.ndarray:
        """One UV per vertex: that of the first face corner (in face order) using the vertex.

        Returns:
            ``(V, 2)`` float32; NaN for vertices that no face uses.

        Raises:
            ValueError: the mesh has no UVs.
        """
        if self.uv is None:
            raise ValueError("this mesh has no texture coordinates")
        out = np.full((self.num_vertices, 2), np.nan, dtype=np.float32)
        corners = self.faces.ravel()
        used, first = np.unique(corners, return_index=True)
        out[used] = self.uv[self.face_uv.ravel()[first]]
        return out

    def copy_with(self, **changes) -> "Mesh":
        """A copy with some fields replaced, e.g. ``mesh.copy_with(vertices=deformed)`` (same topology)."""
        if "vertices" in changes:
            shape = np.shape(changes["vertices"])
            if "faces" not in changes and shape != self.vertices.shape:
                raise ValueError(f"new vertices {shape} must match the mesh's {self.vertices.shape}")
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------------- validation


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])


def _validate(path: Path, mesh: Mesh) -> Mesh:
    """Raise a clear error unless ``mesh`` is usable: vertices and faces present, finite, in range."""
    if mesh.num_vertices == 0:
        raise MMTalkerError(path, "the mesh has no vertices", _HINT)
    if mesh.num_faces == 0:
        raise MMTalkerError(path, f"the mesh has {mesh.num_vertices} vertices but no faces", "mmtalker needs a surface, not a point cloud")
    bad = ~np.isfinite(mesh.vertices)
    if bad.any():
        n = int(bad.any(axis=1).sum())
        raise MMTalkerError(path, f"{n} vertices have NaN or infinite coordinates (first: vertex {_first(bad)})")
    out = (mesh.faces < 0) | (mesh.faces >= mesh.num_vertices)
    if out.any():
        raise MMTalkerError(
            path,
            f"{int(out.any(axis=1).sum())} faces use vertex indices outside 0..{mesh.num_vertices - 1} "
            f"(first: face {_first(out)}: {mesh.faces[_first(out)].tolist()})",
            "the file is corrupt or truncated",
        )
    if mesh.uv is not None:
        if not np.all(np.isfinite(mesh.uv)):
            raise MMTalkerError(path, "some texture coordinates are NaN or infinite")
        out = (mesh.face_uv < 0) | (mesh.face_uv >= len(mesh.uv))
        if out.any():
            raise MMTalkerError(
                path, f"{int(out.any(axis=1).sum())} faces use texture-coordinate indices outside 0..{len(mesh.uv) - 1}"
            )
    return mesh


# ------------------------------------------------------------------------------------------------------ OBJ


def _obj_index(token: str, count: int, path: Path, lineno: int, kind: str) -> int:
    """A 1-based (or negative, relative) OBJ index as a 0-based index."""
    try:
        i = int(token)
    except ValueError:
        raise MMTalkerError(path, f"line {lineno}: bad {kind} index {token!r}", "the file is corrupt") from None
    if i == 0:
        raise MMTalkerError(path, f"line {lineno}: {kind} index 0 (OBJ indices start at 1)", "the file is corrupt")
    return i - 1 if i > 0 else count + i


def _obj_floats(parts: list[str], n: int, path: Path, lineno: int) -> list[float]:
    if len(parts) < n + 1:
        raise MMTalkerError(path, f"line {lineno}: {parts[0]!r} needs {n} numbers, got {len(parts) - 1}", "the file is corrupt or truncated")
    try:
        return [float(p) for p in parts[1 : n + 1]]
    except ValueError:
        raise MMTalkerError(path, f"line {lineno}: not a number in {' '.join(parts[:4])!r}", "the file is corrupt") from None


def _obj_face(parts, nv, nvt, path, lineno) -> tuple[list[int], list[int] | None]:
    """Vertex and (when every corner has one) texture indices of one ``f`` line."""
    if len(parts) < 4:
        raise MMTalkerError(path, f"line {lineno}: a face needs at least 3 corners, got {len(parts) - 1}", "the file is corrupt or truncated")
    v, vt = [], []
    for corner in parts[1:]:
        fields = corner.split("/")
        v.append(_obj_index(fields[0], nv, path, lineno, "vertex"))
        if len(fields) > 1 and fields[1]:
            vt.append(_obj_index(fields[1], nvt, path, lineno, "texture"))
    if vt and len(vt) != len(v):
        raise MMTalkerError(path, f"line {lineno}: only some corners of the face have texture coordinates")
    return v, (vt or None)


def _fan(corners: list[int]) -> list[tuple[int, int, int]]:
    """Fan triangulation of a polygon: (0,1,2), (0,2,3), ..."""
    return [(corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1)]


def _parse_obj(path: Path, text: str) -> Mesh:
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[tuple[int, int, int]] = []
    face_uv: list[tuple[int, int, int]] = []
    faces_without_uv = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "v":
            verts.append(_obj_floats(parts, 3, path, lineno))
        elif key == "vt":
            uvs.append(_obj_floats(parts, 2, path, lineno) if len(parts) > 2 else _obj_floats(parts, 1, path, lineno) + [0.0])
        elif key == "f":
            v, vt = _obj_face(parts, len(verts), len(uvs), path, lineno)
            faces.extend(_fan(v))
            if vt is None:
                faces_without_uv += 1
            else:
                face_uv.extend(_fan(vt))
    return _obj_mesh(path, verts, uvs, faces, face_uv, faces_without_uv)


def _obj_mesh(path, verts, uvs, faces, face_uv, faces_without_uv) -> Mesh:
    """Arrays from the parsed lists; UVs kept only when every face has them."""
    if face_uv and faces_without_uv:
        warnings.warn(f"{path}: {faces_without_uv} faces have no texture coordinates; ignoring the file's UVs", stacklevel=3)
        face_uv = []
    try:
        faces_arr = np.array(faces, dtype=np.int64).reshape(-1, 3)
        uv_idx = np.array(face_uv, dtype=np.int64).reshape(-1, 3) if face_uv else None
    except OverflowError:
        raise MMTalkerError(path, "a face index is far outside the vertex list", "the file is corrupt") from None
    mesh = Mesh(
        vertices=np.array(verts, dtype=np.float64).reshape(-1, 3),
        faces=faces_arr,
        uv=np.array(uvs, dtype=np.float64).reshape(-1, 2) if uv_idx is not None else None,
        face_uv=uv_idx,
        path=str(path),
    )
    return mesh


def _read_obj(path: Path) -> Mesh:
    data = path.read_bytes()
    if b"\x00" in data:
        raise MMTalkerError(path, "not a text OBJ file (it holds binary data)", _HINT)
    with np.errstate(over="ignore", invalid="ignore"):  # huge numbers become inf, which _validate reports
        return _parse_obj(path, data.decode("utf-8", errors="replace"))


# ------------------------------------------------------------------------------------------------------ PLY


def _ply_counts(path: Path) -> dict[str, int]:
    """Element counts declared in a PLY header (``{"vertex": V, "face": F, ...}``)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head[:3] != b"ply":
        raise MMTalkerError(path, "not a PLY file (it does not start with 'ply')", _HINT)
    end = head.find(b"end_header")
    if end < 0:
        raise MMTalkerError(path, "the PLY header has no end_header line", "the file is corrupt or truncated")
    counts = {}
    for line in head[:end].decode("ascii", errors="replace").splitlines():
        parts = line.split()
        if parts[:1] == ["element"]:
            if len(parts) != 3 or not parts[2].isdigit():
                raise MMTalkerError(path, f"bad PLY header line {line.strip()[:60]!r}", "the file is corrupt")
            counts[parts[1]] = int(parts[2])
    return counts


def _check_ply_counts(path: Path, counts: dict[str, int], num_vertices: int, num_triangles: int) -> None:
    """trimesh reads what is there; a truncated ASCII PLY must not pass as a smaller mesh."""
    want_v, want_f = counts.get("vertex", 0), counts.get("face", 0)
    if num_vertices != want_v or num_triangles < want_f:
        raise MMTalkerError(
            path, f"the header promises {want_v} vertices and {want_f} faces, the file holds {num_vertices} and "
            f"{num_triangles} triangles", "the file is corrupt or truncated",
        )


def _read_ply(path: Path) -> Mesh:
    import trimesh

    counts = _ply_counts(path)
    try:
        loaded = trimesh.load(str(path), file_type="ply", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh's parser raises many types on bad input
        raise MMTalkerError(path, f"cannot parse the PLY file ({type(exc).__name__}: {exc})", "the file is corrupt or truncated") from None
    if not isinstance(loaded, trimesh.Trimesh):
        count = len(getattr(loaded, "vertices", []))
        raise MMTalkerError(path, f"the PLY file has {count} vertices but no faces", "mmtalker needs a surface, not a point cloud")
    vertices = np.asarray(loaded.vertices)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    _check_ply_counts(path, counts, len(vertices), len(faces))
    uv = getattr(loaded.visual, "uv", None)
    with np.errstate(over="ignore", invalid="ignore"):  # huge numbers become inf, which _validate reports
        if uv is not None and len(uv) == len(vertices):
            return Mesh(vertices, faces, uv=np.asarray(uv), face_uv=faces.copy(), path=str(path))
        return Mesh(vertices, faces, path=str(path))


# ---------------------------------------------------------------------------------------------- public API


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh, keeping the file's vertex order.

    Args:
        path: ``.obj`` (texture coordinates kept; polygons fan-triangulated) or ``.ply`` (ASCII or binary;
            per-vertex ``s, t`` / ``u, v`` kept as UVs).

    Returns:
        A validated :class:`Mesh` (vertex count = the file's vertex count).

    Raises:
        MMTalkerError: missing file, unknown suffix, corrupt or truncated file, no vertices or faces,
        non-finite coordinates, face indices out of range.
    """
    path = Path(path)
    if not path.exists():
        raise MMTalkerError(path, "no such file", "check the path")
    if path.is_dir():
        raise MMTalkerError(path, "is a folder, not a mesh file", _HINT)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MMTalkerError(path, f"unknown mesh file type {path.suffix!r}", _HINT)
    try:
        mesh = _read_obj(path) if suffix == ".obj" else _read_ply(path)
    except OSError as exc:
        raise MMTalkerError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return _validate(path, mesh)


def _obj_text(mesh: Mesh) -> str:
    buf = io.StringIO()
    buf.write("# written by mmtalker\n")
    np.savetxt(buf, mesh.vertices, fmt="v %.9g %.9g %.9g")  # 9 significant digits: float32 round-trips exactly
    if mesh.uv is not None:
        np.savetxt(buf, mesh.uv, fmt="vt %.9g %.9g")
        corners = np.stack([mesh.faces + 1, mesh.face_uv + 1], axis=2).reshape(-1, 6)
        np.savetxt(buf, corners, fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(buf, mesh.faces + 1, fmt="f %d %d %d")
    return buf.getvalue()


def _ply_bytes(mesh: Mesh, path: Path) -> bytes:
    """Binary little-endian PLY: float32 x y z (+ s t when UVs are per vertex), int32 triangle lists."""
    per_vertex_uv = mesh.uv is not None and len(mesh.uv) == mesh.num_vertices and np.array_equal(mesh.face_uv, mesh.faces)
    if mesh.uv is not None and not per_vertex_uv:
        warnings.warn(f"{path}: PLY holds one UV per vertex; this mesh has UV seams, so its UVs are not written (use .obj)", stacklevel=3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("s", "<f4"), ("t", "<f4")] if per_vertex_uv else [])
    vert = np.empty(mesh.num_vertices, dtype=fields)
    vert["x"], vert["y"], vert["z"] = mesh.vertices.T
    if per_vertex_uv:
        vert["s"], vert["t"] = mesh.uv.T
    face = np.empty(mesh.num_faces, dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face["n"] = 3
    face["v"] = mesh.faces
    props = "".join(f"property float {name}\n" for name, _ in fields)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by mmtalker\n"
        f"element vertex {mesh.num_vertices}\n{props}"
        f"element face {mesh.num_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    return header.encode("ascii") + vert.tobytes() + face.tobytes()


def save_mesh(path: str | os.PathLike, mesh: Mesh, *, overwrite: bool = False) -> Path:
    """Write a mesh as OBJ (with ``vt`` and ``f v/vt`` when it has UVs) or binary PLY, chosen by suffix.

    Coordinates are written so that float32 values read back exactly. Refuses to replace an existing
    file unless ``overwrite=True``. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MMTalkerError(path, f"unknown mesh file type {path.suffix!r}", "use .obj or .ply")
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass overwrite=True (or --overwrite) to replace it")
    if mesh.num_vertices and mesh.faces.size and (mesh.faces.min() < 0 or mesh.faces.max() >= mesh.num_vertices):
        raise ValueError("save_mesh: face indices out of range")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".obj":
        path.write_text(_obj_text(mesh))
    else:
        path.write_bytes(_ply_bytes(mesh, path))
    return path


# ------------------------------------------------------------------------------------------------- summary


def _edges(faces: np.ndarray) -> np.ndarray:
    """``(3F, 2)`` undirected edges of the triangles, each sorted (low, high)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=0)
    return np.sort(e, axis=1)


def _count_components(edges: np.ndarray, nodes: np.ndarray, num_vertices: int) -> int:
    """Connected components of the graph ``edges`` restricted to the vertices ``nodes``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if nodes.size == 0:
        return 0
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    return int(np.unique(labels[nodes]).size)


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """``(B, 2)`` undirected edges used by exactly one triangle, sorted (low, high)."""
    edges = _edges(np.asarray(faces, dtype=np.int64))
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return uniq[counts == 1]


def mesh_summary(mesh: Mesh) -> dict:
    """Counts that say what a mesh is.

    Returns:
        dict with ``vertices``, ``faces``, ``components`` (connected pieces, through shared face
        vertices; vertices used by no face are not counted, see ``unreferenced_vertices``),
        ``boundary_loops`` (closed chains of edges used by one triangle only: 0 for a closed surface,
        1 for a disk, 2 for a face with an open mouth; loops touching at a vertex count as one),
        ``has_uv``, ``uv_count`` (0 without UVs) and ``unreferenced_vertices``.
    """
    V = mesh.num_vertices
    used = np.unique(mesh.faces)
    border = boundary_edges(mesh.faces)
    return {
        "vertices": V,
        "faces": mesh.num_faces,
        "components": _count_components(_edges(mesh.faces), used, V),
        "boundary_loops": _count_components(border, np.unique(border), V),
        "has_uv": mesh.uv is not None,
        "uv_count": 0 if mesh.uv is None else int(len(mesh.uv)),
        "unreferenced_vertices": int(V - used.size),
    }
