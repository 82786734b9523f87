"""Weight fields of the face rig: smooth per-vertex weights placed with the 68 landmarks.

Every field is built from shortest distances along the mesh's edges (Dijkstra), so that the two lips,
which almost touch in space but are joined only at the mouth corners, never share weights, and from
smooth 1D profiles:

* ``falloff(u) = (1 - u²)²`` for ``u < 1``, else 0 (C¹: flat at the centre and at the edge);
* cardinal pchip profiles along x through landmark nodes (1 at one node, 0 at the others and at the
  corners), so that a field is exactly 1 on its own landmark and 0 on every other one — which lets
  the rig close the lips and the eyelids exactly at the landmark pairs.

Lengths are in units of ``s``, the outer eye-corner distance (landmarks 36–45).
"""

from __future__ import annotations

import numpy as np

from mmtalker.synth.face_regions import densify
from mmtalker.synth.mouth import geodesic

UPPER_INNER_LIP = (61, 62, 63)
LOWER_INNER_LIP = (67, 66, 65)
"""Lower inner-lip landmarks in the order of their partners in :data:`UPPER_INNER_LIP`."""
EYES = {"left": ((43, 44), (47, 46), (42, 45)), "right": ((37, 38), (41, 40), (36, 39))}
"""Per eye (the subject's left is +x): upper-lid landmarks, their lower partners, the corners."""


def falloff(u: np.ndarray) -> np.ndarray:
    """``(1 - u²)²`` on [0, 1), 0 beyond; any shape."""
    u = np.clip(np.abs(u), 0.0, 1.0)
    return (1.0 - u * u) ** 2


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below ``e0``, 1 above ``e1`` (either order), cubic in between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def cardinal_profiles(x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``(N, K)`` profiles along ``x`` (N,): profile k is 1 at ``nodes[k+1]``, 0 at every other node.

    ``nodes`` ``(K+2,)`` strictly increasing; the first and last are the ends (corners), where every
    profile is 0 and beyond which it stays 0. Monotone cubic (pchip) between nodes: no overshoot.
    """
    from scipy.interpolate import PchipInterpolator

    if np.any(np.diff(nodes) <= 0):
        raise ValueError(f"landmark nodes must be strictly increasing along x, got {nodes}")
    k = len(nodes) - 2
    values = np.zeros((len(nodes), k))
    values[1:-1] = np.eye(k)
    out = PchipInterpolator(nodes, values, axis=0, extrapolate=False)(x)
    return np.nan_to_num(out, nan=0.0)


def curve_vertices(vertices: np.ndarray, points: np.ndarray, scale: float) -> np.ndarray:
    """Vertices nearest to the polyline through ``points`` (P,3), sampled every 1% of ``scale``."""
    from scipy.spatial import cKDTree

    return np.unique(cKDTree(vertices).query(densify(points, False, 0.01 * scale))[1])


def jaw_weight(graph, vertices: np.ndarray, landmarks: np.ndarray, s: float) -> np.ndarray:
    """``(V,)`` share of the jaw's rotation each vertex follows: 1 on the lower lip and chin, 0 above the mouth.

    Sides come from the surface distance to the upper vs the lower inner-lip landmarks; nothing above
    the nose's base follows, and below the chin the weight fades so that the neck stays put.
    """
    d_up = geodesic(graph, landmarks[list(UPPER_INNER_LIP)])
    d_lo = geodesic(graph, landmarks[list(LOWER_INNER_LIP)])
    side = smoothstep(-0.15 * s, 0.3 * s, d_up - d_lo)
    y = vertices[:, 1]
    below_nose = smoothstep(y[landmarks[33]], y[landmarks[[48, 54]]].mean(), y)
    neck = smoothstep(y[landmarks[8]] - 0.45 * s, y[landmarks[8]] - 0.1 * s, y)
    return smooth(graph, side * below_nose * neck, 10)


def lip_fields(graph, vertices: np.ndarray, landmarks: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper ``(V,3)`` and lower ``(V,3)`` lip fields, one per inner-lip landmark pair, and the lower lip's mask ``(V,)``.

    Field k is exactly 1 at its landmark (``UPPER_INNER_LIP[k]`` or ``LOWER_INNER_LIP[k]``) and 0 at
    the other five and at the corners; it spreads over its lip (a plateau 7% of ``s`` wide, then
    :func:`falloff` over 25% of ``s``) and never reaches the other lip. The mask is the same spread
    without the profile along x.
    """
    x = vertices[:, 0]
    corners = x[landmarks[[60, 64]]]
    out = []
    for own, other in ((UPPER_INNER_LIP, LOWER_INNER_LIP), (LOWER_INNER_LIP, UPPER_INNER_LIP)):
        d_own = geodesic(graph, landmarks[list(own)])
        d_other = geodesic(graph, landmarks[list(other)])
        side = smoothstep(0.0, 0.12 * s, d_other - d_own)
        reach = falloff(np.maximum(d_own - 0.07 * s, 0.0) / (0.25 * s))
        nodes = x[landmarks[list(own)]]
        order = np.argsort(nodes)
        prof = cardinal_profiles(x, np.concatenate([[corners[0]], nodes[order], [corners[1]]]))
        prof = prof[:, np.argsort(order)]  # back to the order of ``own``
        out.append(prof * (side * reach)[:, None])
        mask = side * reach
    return out[0], out[1], mask


def smooth(graph, field: np.ndarray, iterations: int) -> np.ndarray:
    """Relax ``field`` (V,) or (V,K) toward its neighbours' mean ``iterations`` times (uniform Laplacian, half steps)."""
    adj = (graph > 0).astype(np.float64)
    inv_deg = 1.0 / np.maximum(np.asarray(adj.sum(axis=1)).ravel(), 1.0)
    inv_deg = inv_deg if field.ndim == 1 else inv_deg[:, None]
    for _ in range(iterations):
        field = 0.5 * field + 0.5 * inv_deg * (adj @ field)
    return field


def eyelid_fields(graph, vertices: np.ndarray, landmarks: np.ndarray, s: float, eye: str) -> np.ndarray:
    """``(V,2)`` upper-lid fields of one eye, one per upper-lid landmark, each exactly 1 at its landmark.

    Field k is ``profile_k(x) · t(x, y)``: the profile along x is 1 at its landmark, 0 at the other
    one and at the corners; ``t`` rises linearly in y from 0 on the lower lid to 1 on the upper lid
    (the lids being curves through the corners and the lid landmarks), so that a closing lid squeezes
    the eye's surface evenly, without folding it. "Along x" is along the line through the eye's
    corners. Above the upper lid the field fades out over 12% of ``s``; it is cut off 0.3 ``s``
    (along the surface) away from the eye.
    """
    from scipy.interpolate import PchipInterpolator

    upper, lower, (c0, c1) = EYES[eye]
    pts = vertices[landmarks]
    axis = (pts[c1] - pts[c0]) / np.linalg.norm(pts[c1] - pts[c0])  # from corner to corner, along the eye
    x, y = (vertices - pts[c0]) @ axis, vertices[:, 1]
    pts = np.concatenate([((pts - pts[c0]) @ axis)[:, None], pts[:, 1:]], axis=1)  # the same coordinate for landmarks
    ends = np.sort(pts[[c0, c1], 0])
    nodes = pts[list(upper), 0]
    order = np.argsort(nodes)
    prof = cardinal_profiles(x, np.concatenate([[ends[0]], nodes[order], [ends[1]]]))[:, np.argsort(order)]
    low_pts = pts[[c0, c1, *lower]]
    low_order = np.argsort(low_pts[:, 0])
    y_low = PchipInterpolator(low_pts[low_order, 0], low_pts[low_order, 1], extrapolate=True)(np.clip(x, *ends))
    height = prof @ (pts[list(upper), 1] - pts[list(lower), 1])  # (V,) lid opening at each x
    t = (y - y_low) / np.maximum(height, 1e-4)
    between = np.clip(t, 0.0, 1.0)
    above = falloff(np.maximum(t - 1.0, 0.0) * height / (0.12 * s))
    d_eye = geodesic(graph, landmarks[[c0, c1, *upper, *lower]])
    near = falloff(np.maximum(d_eye - 0.15 * s, 0.0) / (0.15 * s))
    fields = prof * (between * above * near)[:, None]
    own = fields[landmarks[list(upper)], np.arange(len(upper))]
    return fields / own[None]


def mouth_mask(graph, vertices: np.ndarray, landmarks: np.ndarray, s: float) -> np.ndarray:
    """``(V,)`` 1 on the lips, fading to 0 about 0.3 ``s`` away (for rounding and spreading)."""
    d = geodesic(graph, landmarks[48:68])
    return falloff(np.maximum(d - 0.05 * s, 0.0) / (0.3 * s))


def brow_field(graph, vertices: np.ndarray, landmarks: np.ndarray, s: float) -> np.ndarray:
    """``(V,)`` 1 on the brows, fading up the forehead and down to nothing at the upper lids."""
    pts = vertices[landmarks]
    brows = np.concatenate([curve_vertices(vertices, pts[17:22], s), curve_vertices(vertices, pts[22:27], s)])
    d = geodesic(graph, brows)
    lid_y = pts[[37, 38, 43, 44], 1].max()  # the lids stay: a blink squeezes the eye from where they are
    gate = smoothstep(lid_y, pts[17:27, 1].mean(), vertices[:, 1])
    return falloff(d / (0.6 * s)) * gate
