"""The mouth opening of a face mesh: its boundary loop, split at the corners into the two lips.

The synthetic faces (menpo3d's template and the procedural head) have an open mouth: a hole whose
boundary is the line where the lips meet. Its inner-lip landmarks (iBUG 60–67) lie on that loop:
60 and 64 at the corners, 61–63 on the upper lip, 65–67 on the lower one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtalker.errors import MMTalkerError


@dataclass(frozen=True)
class MouthLoop:
    """Vertex indices of the mouth's boundary loop.

    Attributes:
        corners: ``(2,)`` the right (−x) and left (+x) corner vertices.
        upper: ``(U,)`` upper-lip vertices of the loop, corners excluded, ordered by x.
        lower: ``(L,)`` lower-lip vertices of the loop, corners excluded, ordered by x.
    """

    corners: np.ndarray
    upper: np.ndarray
    lower: np.ndarray


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Every boundary loop of a triangle mesh, each an ordered ``(K,)`` int64 array of vertices."""
    import igl

    return [np.asarray(loop, dtype=np.int64) for loop in igl.boundary_loop_all(np.asarray(faces, dtype=np.int64))]


def find_mouth(vertices: np.ndarray, faces: np.ndarray, inner_lip: np.ndarray) -> MouthLoop:
    """Locate the mouth loop from the inner-lip landmark points and split it into lips.

    Args:
        vertices: ``(V,3)`` positions (+y up).
        faces: ``(F,3)`` triangles.
        inner_lip: ``(8,3)`` positions of landmarks 60–67 (or points near them).
    """
    loops = boundary_loops(faces)
    if len(loops) < 2:
        raise MMTalkerError("face mesh", f"has {len(loops)} boundary loop(s); a face with an open mouth has two or more")
    centre = inner_lip.mean(0)
    loop = min(loops, key=lambda lp: np.linalg.norm(vertices[lp].mean(0) - centre))
    pos = [int(np.argmin(np.linalg.norm(vertices[loop] - inner_lip[k], axis=1))) for k in (0, 4)]
    if pos[0] == pos[1]:
        raise MMTalkerError("face mesh", "both mouth corners fall on the same vertex of the mouth loop")
    rolled = np.roll(loop, -pos[0])
    cut = (pos[1] - pos[0]) % len(loop)
    arc_a, arc_b = rolled[1:cut], rolled[cut + 1 :]
    if arc_a.size == 0 or arc_b.size == 0:
        raise MMTalkerError("face mesh", "the mouth loop has no vertex between its corners on one lip")
    upper, lower = (arc_a, arc_b) if vertices[arc_a, 1].mean() > vertices[arc_b, 1].mean() else (arc_b, arc_a)
    corners = np.array([loop[pos[0]], loop[pos[1]]], dtype=np.int64)
    if vertices[corners[0], 0] > vertices[corners[1], 0]:
        corners = corners[::-1].copy()
    return MouthLoop(corners, upper[np.argsort(vertices[upper, 0])], lower[np.argsort(vertices[lower, 0])])


def edge_graph(vertices: np.ndarray, faces: np.ndarray):
    """Sparse ``(V,V)`` matrix of the mesh's edges weighted by their lengths (for Dijkstra)."""
    from scipy.sparse import coo_matrix

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    w = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1) + 1e-12
    n = len(vertices)
    rows, cols = np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])
    return coo_matrix((np.concatenate([w, w]), (rows, cols)), shape=(n, n)).tocsr()


def geodesic(graph, sources) -> np.ndarray:
    """``(V,)`` shortest distance along mesh edges from the nearest of ``sources`` (inf where unreachable)."""
    from scipy.sparse.csgraph import dijkstra

    return dijkstra(graph, directed=False, indices=np.unique(np.asarray(sources, dtype=np.int64)), min_only=True)


def snap_inner_lip(vertices: np.ndarray, faces: np.ndarray, landmarks: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Landmarks ``(68,)`` with 61–63 moved onto the upper lip and 65–67 onto the lower one.

    The lips may touch in front (menpo3d's template curls them into the mouth, where the hole is), so
    the vertex nearest a landmark point can lie on the wrong lip. A vertex belongs to the upper lip
    when it is nearer, along the surface, to the upper side of the mouth loop than to the lower.
    ``points`` ``(68,3)`` are the landmark positions the indices were taken from.
    """
    mouth = find_mouth(vertices, faces, points[60:68])
    graph = edge_graph(vertices, faces)
    d_up, d_lo = geodesic(graph, mouth.upper), geodesic(graph, mouth.lower)
    out = landmarks.copy()
    for ids, side in ((range(61, 64), np.flatnonzero(d_up < d_lo)), (range(65, 68), np.flatnonzero(d_lo < d_up))):
        for k in ids:
            out[k] = side[np.argmin(np.linalg.norm(vertices[side] - points[k], axis=1))]
    return out

