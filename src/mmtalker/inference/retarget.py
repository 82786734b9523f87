"""Retargeting: animate a mesh of another resolution that shares the checkpoint's face and UV layout.

The model predicts a displacement field that is continuous over the UV plane, so any point of the face
can be queried, not only the training vertices. Each vertex of the new mesh is placed on the checkpoint
template's surface by its closest point there (a face and barycentric coordinates); its UV is the
barycentric blend of that face's corner UVs (on a UV map with seams, a vertex on a seam has one UV per chart, and
each face uses its own chart's). A new vertex sitting on an old one gets that vertex's own UV, exactly what the
model uses at its own vertices, so it gets that vertex's displacement.

The geometry encoder still runs on the checkpoint's topology. Its rest shape is taken from the new mesh:
every checkpoint vertex is moved to its closest point on the new mesh's surface, so a subdivided or
remeshed copy of a face gives the geometry network (nearly) that face's own shape.

Shapes: ``V`` checkpoint vertices, ``F`` checkpoint faces, ``Q`` new-mesh vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtalker.errors import MMTalkerError


@dataclass(frozen=True)
class SurfacePoints:
    """Points on a triangle mesh: ``face_idx`` (Q,) int64, ``bary`` (Q, 3) float32 (rows sum to 1),
    ``distance`` (Q,) float32 from each query point to its closest surface point (mesh units)."""

    face_idx: np.ndarray
    bary: np.ndarray
    distance: np.ndarray


def barycentric(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (Q, 3) of points (Q, 3) in triangles (a, b, c) (each (Q, 3)), clamped into the
    triangle (points are expected on it, up to rounding); degenerate triangles give their first corner."""
    v0, v1, v2 = b - a, c - a, points - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    ok = np.abs(den) > 1e-30
    den = np.where(ok, den, 1.0)
    v = np.where(ok, (d11 * d20 - d01 * d21) / den, 0.0)
    w = np.where(ok, (d00 * d21 - d01 * d20) / den, 0.0)
    bary = np.clip(np.stack([1.0 - v - w, v, w], 1), 0.0, None)
    return bary / bary.sum(1, keepdims=True)


def closest_surface_points(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> SurfacePoints:
    """Closest point on the triangle mesh (vertices (V,3), faces (F,3)) to each of ``points`` (Q,3)."""
    import igl

    verts = np.ascontiguousarray(vertices, dtype=np.float64)
    tri = np.ascontiguousarray(faces, dtype=np.int64)
    sq, face_idx, closest = igl.point_mesh_squared_distance(np.ascontiguousarray(points, dtype=np.float64), verts, tri)
    corners = verts[tri[face_idx]]  # (Q, 3, 3)
    bary = barycentric(closest, corners[:, 0], corners[:, 1], corners[:, 2])
    return SurfacePoints(face_idx.astype(np.int64), bary.astype(np.float32), np.sqrt(sq).astype(np.float32))


@dataclass(frozen=True)
class RetargetMap:
    """Where a new mesh's vertices sit on the checkpoint's face.

    Attributes:
        points: the new vertices on the checkpoint template (face_idx, bary).
        uv: (Q, 2) float32 their UV coordinates.
        rest_on_checkpoint: (V, 3) float32 the new mesh's shape seen at the checkpoint's vertices (input of the
            geometry encoder).
        rest: (Q, 3) float32 the new mesh's own vertices (its rest shape).
        faces: (F', 3) int64 the new mesh's faces.
    """

    points: SurfacePoints
    uv: np.ndarray
    rest_on_checkpoint: np.ndarray
    rest: np.ndarray
    faces: np.ndarray


def build_retarget_map(new_vertices: np.ndarray, new_faces: np.ndarray, template: np.ndarray, faces: np.ndarray,
                       vertex_uv: np.ndarray, *, corner_uv: np.ndarray | None = None, what: str = "template",
                       max_distance_ratio: float = 0.04) -> RetargetMap:
    """Map a mesh (new_vertices (Q,3), new_faces) onto the checkpoint's template (V,3), faces (F,3), vertex_uv (V,2)
    and corner_uv (F,3,2), each face corner's UV (default ``vertex_uv[faces]``: a map without seams).

    The new mesh must lie on the checkpoint face (same place, scale and orientation): a vertex farther
    from its surface than ``max_distance_ratio`` × the template's size across (its largest extent; 9 mm on FLAME's
    head) raises MMTalkerError: a copy a few cm off would read the lips' motion at the chin.
    """
    new_vertices = np.asarray(new_vertices, dtype=np.float32)
    if new_vertices.ndim != 2 or new_vertices.shape[1] != 3 or not np.isfinite(new_vertices).all():
        raise MMTalkerError(what, "vertices must be a finite (Q, 3) array")
    points = closest_surface_points(new_vertices, template, faces)
    size = float(np.ptp(template, axis=0).max())
    worst = float(points.distance.max())
    if worst > max_distance_ratio * size:
        raise MMTalkerError(
            what, f"does not lie on the checkpoint's face: a vertex is {worst:.3g} from its surface (the face is "
                  f"{size:.3g} across; at most {max_distance_ratio * size:.2g} is taken as on it)",
            "give a mesh with the checkpoint's topology (placed anywhere), or a remeshed/subdivided copy of its template "
            "in the same place and units",
        )
    corners = vertex_uv[faces] if corner_uv is None else np.asarray(corner_uv, np.float32)
    uv = (corners[points.face_idx] * points.bary[..., None]).sum(1)  # (Q, 2), within the face's own chart
    at_vertex = points.bary.max(1) > 1.0 - 1e-5  # on an old vertex: its own UV (a seam vertex has several)
    uv[at_vertex] = vertex_uv[faces[points.face_idx[at_vertex], points.bary[at_vertex].argmax(1)]]
    back = closest_surface_points(template, new_vertices, new_faces)
    rest_on_ckpt = (new_vertices[np.asarray(new_faces)[back.face_idx]] * back.bary[..., None]).sum(1)
    return RetargetMap(points, uv.astype(np.float32), rest_on_ckpt.astype(np.float32), new_vertices,
                       np.asarray(new_faces, np.int64))
