"""Region index sets of a synthetic face, placed with its 68 landmarks.

The sets play the parts of VOCASET's FLAME masks in the metrics: ``lips`` for LVE, ``eye_region``
for EVE, ``forehead`` and ``upper_face`` (forehead ∪ eye region) for FDD. Distances are given in
units of the outer eye-corner distance ``s`` (landmarks 36–45, about 0.095 m), so the sets follow
the face's size.
"""

from __future__ import annotations

import numpy as np

LIP_RADIUS = 0.07
"""Lips: vertices within this many ``s`` of the lip contours (landmarks 48–67), or inside the outer contour."""
EYE_RADIUS = 0.11
"""Eye region: vertices within this many ``s`` of an eye contour (36–41, 42–47), or inside it."""
FOREHEAD_MARGIN = 0.05
"""Forehead: vertices this many ``s`` above the highest brow landmark, between the outer brow ends."""


def densify(points: np.ndarray, closed: bool, step: float) -> np.ndarray:
    """Points every ``step`` along the polyline through ``points`` ``(P,3)``; ``(Q,3)``."""
    pts = np.concatenate([points, points[:1]]) if closed else points
    out = []
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out.append(a + (b - a) * np.linspace(0.0, 1.0, n, endpoint=False)[:, None])
    out.append(pts[-1:])
    return np.concatenate(out)


def _near(vertices: np.ndarray, curve: np.ndarray, radius: float) -> np.ndarray:
    """(V,) bool: within ``radius`` of any point of ``curve`` (Q,3)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(curve).query(vertices)
    return dist < radius


def _inside(vertices: np.ndarray, contour: np.ndarray, depth: float) -> np.ndarray:
    """(V,) bool: inside the (x, y) polygon ``contour`` and no more than ``depth`` behind its points."""
    from matplotlib.path import Path as PolyPath

    inside = PolyPath(contour[:, :2]).contains_points(vertices[:, :2])
    return inside & (vertices[:, 2] > contour[:, 2].min() - depth)


def face_regions(vertices: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The four region sets of a face.

    Args:
        vertices: ``(V,3)`` metres, +y up, +z toward the viewer.
        landmarks: ``(68,)`` vertex indices in iBUG order.

    Returns:
        dict ``lips``, ``eye_region``, ``forehead``, ``upper_face`` → sorted unique ``(K,)`` int64 indices.
    """
    p = vertices[landmarks]
    s = float(np.linalg.norm(p[45] - p[36]))
    step = 0.01 * s
    lip_curves = np.concatenate([densify(p[48:60], True, step), densify(p[60:68], True, step)])
    lips = _near(vertices, lip_curves, LIP_RADIUS * s) | _inside(vertices, p[48:60], 0.15 * s)
    eyes = np.zeros(len(vertices), dtype=bool)
    for k in (36, 42):
        contour = p[k : k + 6]
        eyes |= _near(vertices, densify(contour, True, step), EYE_RADIUS * s) | _inside(vertices, contour, 0.15 * s)
    brows = p[17:27]
    forehead = (
        (vertices[:, 1] > brows[:, 1].max() + FOREHEAD_MARGIN * s)
        & (np.abs(vertices[:, 0] - p[27, 0]) < 0.5 * abs(p[26, 0] - p[17, 0]))
        & (vertices[:, 2] > brows[:, 2].min() - 0.3 * s)
    )
    regions = {"lips": lips, "eye_region": eyes, "forehead": forehead, "upper_face": forehead | eyes}
    return {name: np.flatnonzero(mask).astype(np.int64) for name, mask in regions.items()}
