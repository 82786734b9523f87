"""UV parameterization of a face mesh, point location in UV, and barycentric interpolation.

The model treats the face as a continuous surface: a point is a UV coordinate ``u`` in [0,1]², which
lies in one UV triangle ``f`` with barycentric coordinates ``b``; anything known at the mesh vertices
(positions, displacements, features) is known at ``u`` as ``Σ_k b_k · value[faces[f, k]]``.

How the map is made (:func:`parameterize`):

* ``own``: the file's texture coordinates. A mesh vertex may own several UV points (seams, ``U > V``);
  UV points are the distinct (mesh vertex, file UV) pairs the faces use, so ``uv_vertex`` is always
  well defined. Coordinates outside [0,1]² are scaled uniformly into it; otherwise kept as they are.
* computed, per connected component (a *chart* each; closed components give two):
  - the outer boundary is the boundary loop with the longest **3D perimeter** (libigl's
    ``boundary_loop`` picks the loop with the most vertices, which on FLAME is the mouth, not the neck);
    it is mapped to the unit circle with spacing proportional to edge length;
  - inner boundary loops (the mouth) are temporarily closed by a fan around their centroid so the
    solve sees a disk; the fan triangles are dropped afterwards, so holes stay holes in UV;
  - ``harmonic`` (cotangent weights) first; where it flips triangles, ``lscm`` (two boundary vertices
    pinned); where that flips too, ``mean_value`` (Floater's mean-value weights: positive, hence a
    bijective map onto the convex disk). The first method with no flip wins, else the one with fewest;
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

import igl
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

from mmtalker.errors import MMTalkerError

METHODS = ("auto", "own", "harmonic", "lscm", "mean_value")
_RADIAL_KNOTS = 64  # pieces of the radial area-equalising map (more: closer fit, more risk of flips)
_EQUALISE_FLIP_SHARE = 1e-3  # slivers the radial equalisation may flip (counted in UVMap.flipped)
_MARGIN = 0.01  # gap between packed charts and to the border, as a fraction of the layout size


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


def signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed areas of 2D triangles; ``uv`` (N,2), ``faces`` (F,3)."""
    a = uv[faces[:, 1]] - uv[faces[:, 0]]
    b = uv[faces[:, 2]] - uv[faces[:, 0]]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 3D triangle areas."""
    v = np.asarray(vertices, np.float64)
    return 0.5 * np.linalg.norm(np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]), axis=1)


# ---------------------------------------------------------------------------------------------------
# one chart: a disk-like piece of the mesh mapped into the unit disk


@dataclass
class _Chart:
    face_ids: np.ndarray  # (k,) faces of the mesh in this chart
    vertex_ids: np.ndarray  # (n,) mesh vertices of the chart; local index = position here
    local_faces: np.ndarray  # (k,3) into vertex_ids
    uv: np.ndarray  # (n,2) float64, any scale
    method: str
    flipped: int


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(loop, np.int64) for loop in igl.boundary_loop_all(faces)]


def _fill_holes(verts: np.ndarray, faces: np.ndarray, holes: list[np.ndarray]):
    """Close each inner loop with a fan around an added centroid vertex, oriented like its neighbours.

    Returns (V+H,3) vertices and (F+Σ|loop|,3) faces; the fan centre of hole h is vertex V+h."""
    n = len(verts)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2) @ np.array([n + len(holes), 1])
    extra_v, extra_f = [], []
    for k, loop in enumerate(holes):
        a, b = loop, np.roll(loop, -1)
        along = np.isin(a * (n + len(holes)) + b, directed)  # a face uses a→b, so the fan uses b→a
        fan = np.where(along[:, None], np.stack([b, a], 1), np.stack([a, b], 1))
        extra_v.append(verts[loop].mean(0))
        extra_f.append(np.column_stack([fan, np.full(len(loop), n + k)]))
    if not holes:
        return verts, faces
    return np.vstack([verts, np.array(extra_v)]), np.vstack([faces] + extra_f)


def _mean_value_uv(verts, faces, bnd, bnd_uv):
    """Floater's mean-value map with ``bnd`` fixed at ``bnd_uv``: (n,2). Weights are positive."""
    n = len(verts)
    rows, cols, vals = [], [], []
    for c in range(3):
        i, j, k = faces[:, c], faces[:, (c + 1) % 3], faces[:, (c + 2) % 3]
        eij, eik = verts[j] - verts[i], verts[k] - verts[i]
        lij, lik = np.linalg.norm(eij, axis=1), np.linalg.norm(eik, axis=1)
        cos = np.clip((eij * eik).sum(1) / np.maximum(lij * lik, 1e-300), -1.0, 1.0)
        half_tan = np.tan(0.5 * np.arccos(cos))
        rows += [i, i]
        cols += [j, k]
        vals += [half_tan / np.maximum(lij, 1e-300), half_tan / np.maximum(lik, 1e-300)]
    w = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    lap = sp.diags(np.asarray(w.sum(1)).ravel()) - w
    free = np.setdiff1d(np.arange(n), bnd)
    uv = np.zeros((n, 2))
    uv[bnd] = bnd_uv
    rhs = -lap[free][:, bnd] @ bnd_uv
    uv[free] = spla.splu(lap[free][:, free].tocsc()).solve(np.ascontiguousarray(rhs))
    return uv


def _solve_disk(verts, faces, method: str):
    """Map a component with boundary into the unit disk: (uv (n,2), method used, flipped count)."""
    loops = _boundary_loops(faces)
    perimeter = [np.linalg.norm(verts[lp] - verts[np.roll(lp, -1)], axis=1).sum() for lp in loops]
    outer = loops[int(np.argmax(perimeter))]
    holes = sorted((lp for lp in loops if lp is not outer), key=lambda lp: -len(lp))
    bnd_uv = igl.map_vertices_to_circle(np.asfortranarray(verts), outer.astype(np.int32))
    filled_v, filled_f = _fill_holes(verts, faces, holes)
    centre = len(verts) if holes else None  # the largest hole (the mouth) goes to the disk's centre
    order = {"harmonic": ("harmonic", "lscm", "mean_value"), "lscm": ("lscm",), "mean_value": ("mean_value",)}[method]
    best = None
    for name in order:
        if name == "harmonic":
            uv = igl.harmonic(filled_v, filled_f, outer, bnd_uv, 1)
        elif name == "lscm":
            pins = outer[[0, len(outer) // 2]]
            uv = igl.lscm(filled_v, filled_f, pins, bnd_uv[[0, len(outer) // 2]])[0]
        else:
            uv = _mean_value_uv(filled_v, filled_f, outer, bnd_uv)
        uv = _orient(uv, filled_f)
        if name != "lscm":  # circle-bounded maps: give the crowded middle its share of the disk
            uv = _equalise_radially(_recentre(uv, filled_v, filled_f, centre), filled_v, filled_f)
        flips = int((signed_areas(uv, faces) < 0).sum())
        if best is None or flips < best[2]:
            best = (uv[: len(verts)], name, flips)
        if flips == 0:
            break
    return best


def _orient(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mirror the chart if most of its triangles have negative signed area."""
    area = signed_areas(uv, faces)
    return uv * np.array([-1.0, 1.0]) if (area < 0).sum() > (area > 0).sum() else uv


def _recentre(uv, verts, faces, centre: int | None):
    """Disk automorphism z → (z − z0)/(1 − z̄0 z) moving z0 to the disk's centre (conformal, orientation-
    preserving, keeps the unit circle); z0 is the UV of vertex ``centre`` when given, else the
    3D-area-weighted mean UV."""
    if centre is not None:
        z0 = complex(*uv[centre])
    else:
        w = face_areas(verts, faces)
        z0 = complex(*((uv[faces].mean(1) * w[:, None]).sum(0) / max(w.sum(), 1e-300)))
    if abs(z0) >= 0.95:
        return uv
    z = uv[:, 0] + 1j * uv[:, 1]
    moved = (z - z0) / (1 - np.conj(z0) * z)
    return np.column_stack([moved.real, moved.imag])


def _equalise_radially(uv, verts, faces):
    """Undo the radial crowding of a disk map: move each vertex along its ray from the disk centre so that
    the UV area inside radius g(r) is the 3D area of the faces inside r (g(1)=1, monotone, so the
    boundary circle stays put). g is piecewise linear in r² over quantile knots (smooth enough not to
    flip thin triangles); a full or half-strength move is kept only where it flips at most a 0.1% share
    of the triangles more (near-degenerate slivers, which any move flips; they are counted in ``flipped``).

    Conformal and harmonic maps crowd the far end of a tube-like chart (a head cut open at the neck puts
    the whole face in a small spot); this gives each part a UV share close to its 3D area share."""
    radius = np.linalg.norm(uv, axis=1)
    face_r2 = (uv[faces] ** 2).sum(2).mean(1)
    order = np.argsort(face_r2)
    cum = np.cumsum(face_areas(verts, faces)[order])
    if cum[-1] <= 0:
        return uv
    knots = np.r_[0.0, np.quantile(face_r2, np.linspace(0, 1, _RADIAL_KNOTS + 1)[1:-1]), 1.0]
    knot_share = np.interp(knots, np.r_[0.0, face_r2[order], 1.0], np.r_[0.0, cum / cum[-1], 1.0])
    share = np.interp(radius**2, knots, knot_share)
    allowed = (signed_areas(uv, faces) <= 0).sum() + int(np.ceil(_EQUALISE_FLIP_SHARE * len(faces)))
    for mix in (1.0, 0.5):
        target = np.sqrt(mix * share + (1 - mix) * radius**2)
        moved = uv * (target / np.maximum(radius, 1e-12))[:, None]
        if (signed_areas(moved, faces) <= 0).sum() <= allowed:
            return moved
    return uv


def _split_closed(verts, faces):
    """Cut a closed piece in two across its first principal axis: two boolean face masks."""
    centroids = verts[faces].mean(1)
    centred = centroids - centroids.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    proj = centred @ axis
    side = proj <= np.median(proj)
    return [side, ~side]


def _components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) connected-component label of each face (vertex-connected)."""
    f = faces
    adj = sp.coo_matrix((np.ones(2 * len(f)), (np.r_[f[:, 0], f[:, 1]], np.r_[f[:, 1], f[:, 2]])), shape=(num_vertices,) * 2)
    _, labels = sp.csgraph.connected_components(adj, directed=False)
    return labels[f[:, 0]]


def _make_charts(vertices, faces, face_ids, method, what, depth=0) -> list[_Chart]:
    """Charts for the faces ``face_ids`` (one connected piece), recursing on closed pieces."""
    vertex_ids, local = np.unique(faces[face_ids], return_inverse=True)
    local = local.reshape(-1, 3)
    verts = vertices[vertex_ids].astype(np.float64)
    if len(_boundary_loops(local)) == 0:
        if depth >= 3 or len(face_ids) < 2:
            raise MMTalkerError(what, "a closed mesh component could not be cut into disks for UV mapping",
                                "check the mesh for non-manifold or degenerate parts")
        charts = []
        for mask in _split_closed(verts, local):
            sub = face_ids[mask]
            labels = _components(faces[sub], len(vertices))
            for lab in np.unique(labels):
                charts += _make_charts(vertices, faces, sub[labels == lab], method, what, depth + 1)
        return charts
    uv, used, flips = _solve_disk(verts, local, method)
    return [_Chart(face_ids, vertex_ids, local, uv, used, flips)]


# ---------------------------------------------------------------------------------------------------
# packing charts into [0,1]²


def _pack(charts: list[_Chart], areas3d: np.ndarray) -> list[np.ndarray]:
    """Scale charts to UV area ∝ 3D area, shelf-pack them (largest first), fit into [0,1]²."""
    placed = []
    for ch in charts:
        uv_area = np.abs(signed_areas(ch.uv, ch.local_faces)).sum()
        scale = np.sqrt(areas3d[ch.face_ids].sum() / uv_area) if uv_area > 0 else 1.0
        uv = (ch.uv - ch.uv.min(0)) * scale
        placed.append(uv)
    sizes = np.array([p.max(0) for p in placed])
    gap = _MARGIN * np.sqrt((sizes[:, 0] * sizes[:, 1]).sum())
    row_width = max(sizes[:, 0].max(), np.sqrt((sizes + gap).prod(1).sum()))
    x = y = row_height = 0.0
    for k in np.argsort(-sizes[:, 1], kind="stable"):
        if x > 0 and x + sizes[k, 0] > row_width:
            x, y, row_height = 0.0, y + row_height + gap, 0.0
        placed[k] = placed[k] + np.array([x, y])
        x += sizes[k, 0] + gap
        row_height = max(row_height, sizes[k, 1])
    extent = max(np.vstack(placed).max(0))
    return [(p + gap) / (extent + 2 * gap) for p in placed]


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
    _, labels = np.unique(_components(faces, len(mesh.vertices)), return_inverse=True)
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
    labels = _components(faces, len(vertices))
    charts = []
    for lab in np.unique(labels):
        charts += _make_charts(vertices, faces, np.flatnonzero(labels == lab), method, what)
    charts.sort(key=lambda ch: -areas3d[ch.face_ids].sum())
    packed = _pack(charts, areas3d)
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
