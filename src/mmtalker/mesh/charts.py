"""Charts: pieces of a mesh mapped onto the unit disk, and their packing into [0,1]².

Used by :mod:`mmtalker.mesh.uv` (see its docstring for the choices). A component with boundary is one
chart: its longest boundary loop (3D perimeter) goes to the unit circle, inner loops are closed by
temporary fans, the map is ``harmonic`` → ``lscm`` → ``mean_value`` (the first without flips), then
recentred on the largest hole and equalised radially. A closed component is cut in two first.
Arrays: ``verts (n,3)`` float64, ``faces (k,3)`` int64 local indices, ``uv (n,2)`` float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import igl
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mmtalker.errors import MMTalkerError

_RADIAL_KNOTS = 64  # pieces of the radial area-equalising map (more: closer fit, more risk of flips)
_EQUALISE_FLIP_SHARE = 1e-3  # slivers the radial equalisation may flip (counted in UVMap.flipped)
_MARGIN = 0.01  # gap between packed charts and to the border, as a fraction of the layout size


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
class Chart:
    """A piece of the mesh with its own disk map (before packing)."""

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


def face_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) connected-component label of each face (vertex-connected)."""
    f = faces
    adj = sp.coo_matrix((np.ones(2 * len(f)), (np.r_[f[:, 0], f[:, 1]], np.r_[f[:, 1], f[:, 2]])), shape=(num_vertices,) * 2)
    _, labels = sp.csgraph.connected_components(adj, directed=False)
    return labels[f[:, 0]]


def make_charts(vertices, faces, face_ids, method, what, depth=0) -> list[Chart]:
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
            labels = face_components(faces[sub], len(vertices))
            for lab in np.unique(labels):
                charts += make_charts(vertices, faces, sub[labels == lab], method, what, depth + 1)
        return charts
    uv, used, flips = _solve_disk(verts, local, method)
    return [Chart(face_ids, vertex_ids, local, uv, used, flips)]


# ---------------------------------------------------------------------------------------------------
# packing charts into [0,1]²


def pack_charts(charts: list[Chart], areas3d: np.ndarray) -> list[np.ndarray]:
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
