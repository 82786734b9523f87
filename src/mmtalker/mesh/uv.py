"""UV parameterization of a face mesh, point location in UV, and barycentric interpolation.

The model treats the face as a continuous surface: a point is a UV coordinate ``u`` in [0,1]², which
lies in one UV triangle ``f`` with barycentric coordinates ``b``; anything known at the mesh vertices
(positions, displacements, features) is known at ``u`` as ``Σ_k b_k · value[faces[f, k]]``.

How the map is made (:func:`parameterize`):

* ``own``: the file's texture coordinates. A mesh vertex may own several UV points (seams, ``U > V``);
  UV points are the distinct (mesh vertex, file UV) pairs the faces use, so ``uv_vertex`` is always
  well defined. Coordinates outside [0,1]² are scaled uniformly into it; otherwise kept as they are.
* computed (in :mod:`mmtalker.mesh.charts`), per connected component (a *chart* each; closed components give two):
  - the outer boundary is the boundary loop with the longest **3D perimeter** (libigl's
    ``boundary_loop`` picks the loop with the most vertices, which on FLAME is the mouth, not the neck);
    it is mapped to the unit circle with spacing proportional to edge length;
  - inner boundary loops (the mouth) are temporarily closed by a fan around their centroid so the
    solve sees a disk; the fan triangles are dropped afterwards, so holes stay holes in UV;
  - ``harmonic`` (cotangent weights) first; where it flips triangles, ``lscm`` (two boundary vertices
    pinned); where that flips too, ``mean_value`` (Floater's mean-value weights: positive, hence a
    bijective map onto the convex disk). The first method with no flip wins, else the one with fewest;
  - disk maps are then recentred (a Möbius map of the disk) on the largest hole, the mouth, and
    equalised radially so that each ring of the disk gets a UV share close to its 3D area share (cut
    open at the neck, a FLAME head otherwise crowds the whole face into a spot 1% of the chart wide);
    this may flip a few slivers (at most 0.1% of the triangles), which are counted in ``flipped``;
  - closed components (FLAME's eyeballs have no boundary) are cut in two across their main axis
    (median of the face centroids along the first principal direction); each half is a disk and is
    mapped as above. The cut vertices own one UV point per half (a seam).
* charts are scaled so their UV areas are proportional to their 3D areas, shelf-packed (largest first,
  so the face is at the origin and biggest) and scaled uniformly into [0,1]² with a small margin.

``flipped`` counts triangles whose signed UV area is negative (charts are oriented so that most are
positive; for the file's own UVs, whose charts may be mirrored as a whole, it counts the minority sign
per mesh component). A map with NaN/inf coordinates, zero total area, more than a third of a chart's
triangles flipped, or a majority of them of zero area raises :class:`~mmtalker.errors.MMTalkerError`
(a third, not a half: a scrambled map flips about half, and its minority count stays just below that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mmtalker.errors import MMTalkerError
from mmtalker.mesh.charts import face_areas, face_components, make_charts, pack_charts, signed_areas  # noqa: F401 (re-exported)

METHODS = ("auto", "own", "harmonic", "lscm", "mean_value")


@dataclass(frozen=True)
class UVMap:
    """A mesh's parameterization onto [0,1]².

    Attributes:
        uv: (U,2) float32 UV points in [0,1]².
        faces_uv: (F,3) int64 indices into ``uv``, one row per mesh face (same order as ``faces``).
        uv_vertex: (U,) int64 the mesh vertex of each UV point.
        vertex_uv: (V,2) float32 one UV per mesh vertex (the first face corner's, as ``Mesh.vertex_uv``).
        faces: (F,3) int64 the mesh faces (vertex indices).
        face_area: (F,) float64 3D area of each face (mesh units²).
        face_chart: (F,) int64 the chart of each face (0 = the largest).
        flipped_per_chart: number of triangles with negative signed UV area, per chart.
        chart_methods: the method that made each chart (``own``, ``harmonic``, ``lscm``, ``mean_value``).
        method: the method asked for, resolved (``own`` or the computed family).
    """

    uv: np.ndarray
    faces_uv: np.ndarray
    uv_vertex: np.ndarray
    vertex_uv: np.ndarray
    faces: np.ndarray
    face_area: np.ndarray
    face_chart: np.ndarray
    flipped_per_chart: tuple[int, ...]
    chart_methods: tuple[str, ...]
    method: str

    @property
    def flipped(self) -> int:
        """Total number of triangles with negative signed UV area."""
        return int(sum(self.flipped_per_chart))

    @property
    def num_charts(self) -> int:
        return len(self.chart_methods)

    def uv_area(self) -> np.ndarray:
        """(F,) float64 signed UV area of each face (positive = not flipped)."""
        return signed_areas(self.uv.astype(np.float64), self.faces_uv)

# ---------------------------------------------------------------------------------------------------
# public API


def _own_uvmap(mesh, what) -> UVMap:
    faces = np.asarray(mesh.faces, np.int64)
    pairs = np.stack([faces.ravel(), np.asarray(mesh.face_uv, np.int64).ravel()], 1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    uv = np.asarray(mesh.uv, np.float64)[unique[:, 1]]
    lo, hi = uv.min(0), uv.max(0)
    if lo.min() < 0 or hi.max() > 1:
        uv = (uv - lo) / max((hi - lo).max(), 1e-300)
    faces_uv = inverse.reshape(-1, 3).astype(np.int64)
    _, labels = np.unique(face_components(faces, len(mesh.vertices)), return_inverse=True)
    rank = np.empty(labels.max() + 1, np.int64)
    rank[np.argsort(-np.bincount(labels, face_areas(mesh.vertices, faces)), kind="stable")] = np.arange(len(rank))
    chart = rank[labels]
    area = signed_areas(uv, faces_uv)
    flips = tuple(int(min((area[chart == c] < 0).sum(), (area[chart == c] > 0).sum())) for c in range(chart.max() + 1))
    return _finish(mesh, uv, faces_uv, unique[:, 0], chart, flips, ("own",) * len(flips), "own", what)


def _computed_uvmap(mesh, method, what) -> UVMap:
    vertices = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    areas3d = face_areas(vertices, faces)
    labels = face_components(faces, len(vertices))
    charts = []
    for lab in np.unique(labels):
        charts += make_charts(vertices, faces, np.flatnonzero(labels == lab), method, what)
    charts.sort(key=lambda ch: -areas3d[ch.face_ids].sum())
    packed = pack_charts(charts, areas3d)
    offsets = np.cumsum([0] + [len(ch.vertex_ids) for ch in charts])
    faces_uv = np.empty_like(faces)
    chart_of = np.empty(len(faces), np.int64)
    for c, ch in enumerate(charts):
        faces_uv[ch.face_ids] = ch.local_faces + offsets[c]
        chart_of[ch.face_ids] = c
    uv_vertex = np.concatenate([ch.vertex_ids for ch in charts])
    flips = tuple(ch.flipped for ch in charts)
    return _finish(mesh, np.vstack(packed), faces_uv, uv_vertex, chart_of, flips,
                   tuple(ch.method for ch in charts), method, what)


def _finish(mesh, uv, faces_uv, uv_vertex, chart, flips, methods, method, what) -> UVMap:
    faces = np.asarray(mesh.faces, np.int64)
    _check_degenerate(uv, faces_uv, chart, flips, what)
    num_v = len(mesh.vertices)
    first = np.full(num_v, -1, np.int64)
    corners_v, corners_uv = faces.ravel()[::-1], faces_uv.ravel()[::-1]
    first[corners_v] = corners_uv  # reversed so the first corner in face order is written last and wins
    vertex_uv = np.zeros((num_v, 2))
    have = first >= 0
    vertex_uv[have] = uv[first[have]]
    if not have.all():  # vertices no face uses: the UV of the nearest used vertex in 3D
        pos = np.asarray(mesh.vertices, np.float64)
        nearest = cKDTree(pos[have]).query(pos[~have])[1]
        vertex_uv[~have] = vertex_uv[np.flatnonzero(have)[nearest]]
    return UVMap(uv.astype(np.float32), faces_uv, uv_vertex.astype(np.int64), vertex_uv.astype(np.float32), faces,
                 face_areas(mesh.vertices, faces), chart, flips, methods, method)


def _check_degenerate(uv, faces_uv, chart, flips, what):
    if not np.isfinite(uv).all():
        raise MMTalkerError(what, "the UV map has NaN or infinite coordinates", "try another method= for parameterize")
    area = signed_areas(uv, faces_uv)
    tiny = 1e-12 * max(np.abs(area).sum(), 1e-300)
    for c in range(int(chart.max()) + 1):
        a = area[chart == c]
        if np.abs(a).sum() <= 0 or 3 * flips[c] > len(a) or 2 * (np.abs(a) <= tiny).sum() > len(a):
            raise MMTalkerError(what, f"degenerate UV map: chart {c} has {flips[c]} of {len(a)} triangles flipped "
                                f"and {(np.abs(a) <= tiny).sum()} of zero area", "try another method= for parameterize")


def parameterize(mesh, method: str = "auto") -> UVMap:
    """Map ``mesh`` (a :class:`mmtalker.mesh.io.Mesh`) onto [0,1]².

    Args:
        mesh: vertices (V,3), faces (F,3), optional ``uv`` (U,2) and ``face_uv`` (F,3).
        method: ``auto`` (the file's UVs when present, else ``harmonic``), ``own``, ``harmonic`` (falls back
            to ``lscm`` then ``mean_value`` per chart where it flips triangles), ``lscm`` or ``mean_value``.

    Returns:
        :class:`UVMap`. Raises :class:`MMTalkerError` on a degenerate map or a missing ``own`` UV set.
    """
    what = getattr(mesh, "path", None) or "mesh"
    if method not in METHODS:
        raise MMTalkerError(f"method={method!r}", f"unknown UV method; choose one of {', '.join(METHODS)}")
    has_own = getattr(mesh, "uv", None) is not None and getattr(mesh, "face_uv", None) is not None
    if method == "own" and not has_own:
        raise MMTalkerError(what, "the mesh has no texture coordinates", "use method='harmonic'")
    if len(mesh.faces) == 0:
        raise MMTalkerError(what, "the mesh has no faces to parameterize")
    if method == "own" or (method == "auto" and has_own):
        return _own_uvmap(mesh, what)
    return _computed_uvmap(mesh, "harmonic" if method == "auto" else method, what)


# ---------------------------------------------------------------------------------------------------
# point location and interpolation


class UVLocator:
    """Finds the UV triangle under query points, with a uniform grid over [0,1]² (built once).

    Each triangle is registered in every grid cell its bounding box touches; a point is tested against
    the triangles of its cell only. Points in no triangle (holes, gaps between charts) get the nearest
    point of the map, which lies on a boundary edge, and that edge's triangle with the (clamped)
    barycentrics of that point.
    """

    def __init__(self, uvmap: UVMap, cells_per_side: int | None = None):
        self.tri = uvmap.uv.astype(np.float64)[uvmap.faces_uv]  # (F,3,2)
        num_f = len(self.tri)
        self.g = cells_per_side or int(np.clip(np.sqrt(num_f), 1, 1024))
        lo = np.floor(np.clip(self.tri.min(1), 0, 1) * self.g).clip(0, self.g - 1).astype(np.int64)  # (F,2)
        hi = np.floor(np.clip(self.tri.max(1), 0, 1) * self.g).clip(0, self.g - 1).astype(np.int64)
        span = hi - lo + 1
        count = span[:, 0] * span[:, 1]
        tri_id = np.repeat(np.arange(num_f), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        cell = (lo[tri_id, 0] + k // span[tri_id, 1]) * self.g + lo[tri_id, 1] + k % span[tri_id, 1]
        order = np.argsort(cell, kind="stable")
        self.cell_tris = tri_id[order]
        self.cell_start = np.r_[0, np.cumsum(np.bincount(cell, minlength=self.g * self.g))]
        e1, e2 = self.tri[:, 1] - self.tri[:, 0], self.tri[:, 2] - self.tri[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        self.valid = np.abs(det) > 1e-14 * max(np.abs(det).max(), 1e-300)
        safe = np.where(self.valid, det, 1.0)
        self.inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / safe[:, None, None]
        # boundary edges of the UV triangulation (used by one face): (face, local edge e = corners e, e+1)
        fuv = uvmap.faces_uv
        edges = np.sort(np.stack([fuv, np.roll(fuv, -1, axis=1)], 2).reshape(-1, 2), 1)
        _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
        once = np.flatnonzero(counts[inverse.ravel()] == 1)
        self.edge_face, self.edge_local = once // 3, once % 3
        a, b = self.tri[self.edge_face, self.edge_local], self.tri[self.edge_face, (self.edge_local + 1) % 3]
        self.edge_tree = cKDTree(0.5 * (a + b)) if len(once) else None
        self.half_length = 0.5 * np.linalg.norm(b - a, axis=1).max() if len(once) else 0.0

    def _bary(self, pts: np.ndarray, tris: np.ndarray) -> np.ndarray:
        """(N,3) barycentrics of pts (N,2) in triangles tris (N,); invalid triangles give -inf."""
        rel = pts - self.tri[tris, 0]
        l12 = np.einsum("nij,nj->ni", self.inv[tris], rel)
        bary = np.column_stack([1.0 - l12.sum(1), l12])
        bary[~self.valid[tris]] = -np.inf
        return bary

    def locate(self, points) -> tuple[np.ndarray, np.ndarray]:
        """points (P,2) → face_idx (P,) int64, bary (P,3) float64 (non-negative, rows sum to 1)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        cell = (np.floor(pts.clip(0, 1) * self.g).clip(0, self.g - 1).astype(np.int64) * [self.g, 1]).sum(1)
        start, stop = self.cell_start[cell], self.cell_start[cell + 1]
        count = stop - start
        pid = np.repeat(np.arange(len(pts)), count)
        cand = self.cell_tris[np.repeat(start, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)]
        bary = self._bary(pts[pid], cand)
        score = bary.min(1)
        best = np.full(len(pts), -np.inf)
        np.maximum.at(best, pid, score)
        hit = score >= best[pid]  # the most-inside candidate of each point
        face_idx = np.full(len(pts), -1, np.int64)
        out_bary = np.zeros((len(pts), 3))
        face_idx[pid[hit]] = cand[hit]
        out_bary[pid[hit]] = bary[hit]
        outside = best < -1e-9
        if outside.any():
            face_idx[outside], out_bary[outside] = self._nearest(pts[outside])
        out_bary = out_bary.clip(0, None)
        return face_idx, out_bary / out_bary.sum(1, keepdims=True)

    def _nearest(self, pts: np.ndarray):
        """Nearest point on the map for points outside it: it lies on a boundary edge. Exact: the nearest
        edge is within d + half the longest edge of the point, d the distance to the nearest edge midpoint."""
        if self.edge_tree is None:  # a closed UV surface: no outside (cannot happen with valid charts)
            return np.zeros(len(pts), np.int64), np.full((len(pts), 3), 1.0 / 3)
        d_mid = self.edge_tree.query(pts)[0]
        lists = self.edge_tree.query_ball_point(pts, d_mid + self.half_length + 1e-12)
        pid = np.repeat(np.arange(len(pts)), [len(x) for x in lists])
        edge = np.concatenate([np.asarray(x, np.int64) for x in lists])
        face, e = self.edge_face[edge], self.edge_local[edge]
        a, b = self.tri[face, e], self.tri[face, (e + 1) % 3]
        ab = b - a
        t = (((pts[pid] - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-300)).clip(0, 1)
        dist = np.linalg.norm(a + t[:, None] * ab - pts[pid], axis=1)
        order = np.lexsort((dist, pid))
        first = order[np.r_[True, pid[order][1:] != pid[order][:-1]]]  # the closest edge of each point
        bary = np.zeros((len(pts), 3))
        rows = np.arange(len(pts))
        bary[rows, e[first]] = 1 - t[first]
        bary[rows, (e[first] + 1) % 3] = t[first]
        return face[first], bary


def locate(uvmap: UVMap, points) -> tuple[np.ndarray, np.ndarray]:
    """Face and barycentrics of UV points.

    Args:
        uvmap: the map.
        points: (P,2) UV coordinates.

    Returns:
        face_idx (P,) int64 and bary (P,3) float64, with ``points ≈ Σ_k bary[:, k] · uv[faces_uv[face_idx, k]]``
        for points inside the map; points outside every triangle get the nearest triangle and clamped
        barycentrics. Repeated queries on one map: build a :class:`UVLocator` once.
    """
    return UVLocator(uvmap).locate(points)


def barycentric_interpolate(values, faces, face_idx, bary):
    """Values at surface points from values at mesh vertices (numpy or torch; differentiable in ``values``).

    Args:
        values: (..., V, C) per-vertex values (use ``faces_uv`` and per-UV-point values alike).
        faces: (F,3) vertex indices of each face.
        face_idx: (P,) face of each point.
        bary: (P,3) barycentric coordinates of each point in its face.

    Returns:
        (..., P, C): ``Σ_k bary[p, k] · values[..., faces[face_idx[p], k], :]``.
    """
    if np.ndim(bary) != 2 or np.shape(bary)[1] != 3 or np.shape(face_idx)[0] != np.shape(bary)[0]:
        raise ValueError(f"bary must be (P,3) and face_idx (P,), got {tuple(np.shape(bary))} and {tuple(np.shape(face_idx))}")
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(values, torch.Tensor):
        f = torch.as_tensor(faces, dtype=torch.long, device=values.device)
        corners = f[torch.as_tensor(face_idx, dtype=torch.long, device=values.device)]  # (P,3)
        gathered = values.index_select(-2, corners.reshape(-1)).unflatten(-2, corners.shape)  # (..., P, 3, C)
        b = torch.as_tensor(bary, dtype=values.dtype, device=values.device)
        return torch.einsum("...pkc,pk->...pc", gathered, b)
    values = np.asarray(values)
    corners = np.asarray(faces)[np.asarray(face_idx)]
    return np.einsum("...pkc,pk->...pc", values[..., corners, :], np.asarray(bary, dtype=values.dtype))
