"""An analytic stand-in for the default face, for when menpo3d's template cannot be fetched.

The head is the front of an ellipsoid (a face mask, like menpo3d's template: open at the back, one
piece) sampled on a grid of azimuth θ and elevation φ, with features added as smooth height fields
toward the viewer: eye sockets with eyeballs and lids, a brow ridge, a nose with nostril wings,
cheekbones, lips and a chin. The mouth is a slit: the grid row at the lip line is cut between the
two mouth corners (its vertices are duplicated, the copies belonging to the lower lip), so the mesh
has two boundary loops, the outer edge and the mouth, as the real template has.

Axes are those of FLAME/VOCASET: metres, +y up, +z toward the viewer, +x toward the subject's left;
the head is built about the skull's centre, then centred on its bounding box.
The 68 landmarks (iBUG order) are placed analytically and snapped to grid vertices; the inner-lip
landmarks 60–67 lie on the mouth slit (60 and 64 at its corners, 61–63 on the upper lip, 65–67 on
the lower one).
"""

from __future__ import annotations

import numpy as np

# Proportions of the head, in metres (a human-sized adult face).
HEAD_RADII = (0.076, 0.118, 0.092)
"""Semi-axes (x, y, z) of the skull ellipsoid, centred at the origin."""
EYE_CENTRE = (0.0315, 0.028)
"""(|x|, y) of each eye's centre; the outer corners then lie 0.095 m apart."""
EYE_HALF = (0.016, 0.0048)
"""Half width and half height of the eye opening."""
MOUTH_Y = -0.043
"""Height of the lip line (the mouth slit)."""
MOUTH_HALF_WIDTH = 0.025
"""Half the distance between the mouth corners."""
REST_LIP_GAP = 0.0008
"""Opening of the mouth slit at the midline at rest (the lips almost touch)."""


def _gauss(d: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (d / sigma) ** 2)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _nose(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the nose above the skull: a ridge from the brows to the tip, wings beside the base."""
    tip_y, base_y, top_y = -0.012, -0.026, 0.036
    profile = np.where(
        y < tip_y,
        0.026 * _smoothstep(base_y, tip_y, y) ** 0.7,
        0.026 + (0.007 - 0.026) * _smoothstep(tip_y, top_y, y),
    )
    profile = profile * (1.0 - _smoothstep(top_y, top_y + 0.02, y))
    width = 0.0065 + 0.004 * _smoothstep(top_y, tip_y, y)
    ridge = profile * _gauss(x, width)
    wings = 0.010 * _gauss(np.hypot((np.abs(x) - 0.014) / 1.2, y + 0.019), 0.0065)
    return ridge + wings


def _eyes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sockets, eyeballs showing through the lid opening, lids with a crease above the upper one."""
    ex, ey = EYE_CENTRE
    ax, ay = EYE_HALF
    dx = np.abs(x) - ex
    dy = y - ey
    socket = -0.011 * _gauss(np.hypot(dx / 1.3, dy), 0.015)
    ball = 0.0095 * np.clip(1.0 - (dx / 0.0145) ** 2 - (dy / 0.0115) ** 2, 0.0, None) ** 1.5
    rim = np.hypot(dx / ax, dy / ay)  # 1 on the lid margin
    upper = _smoothstep(-0.002, 0.002, dy)
    lids = (0.0010 + 0.0008 * upper) * _gauss(rim - 1.15, 0.25)
    margin = -0.0008 * _gauss(rim - 1.0, 0.08)  # the line where lid meets eye
    crease = -0.0010 * _gauss(rim - 2.0, 0.3) * upper
    return socket + ball + lids + margin + crease


def _face(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (metres, toward +z) of every facial feature at face coordinates (x, y)."""
    brow = 0.0055 * _gauss(y - 0.049, 0.007) * (1.0 - _smoothstep(0.045, 0.065, np.abs(x)))
    cheeks = 0.006 * _gauss(np.hypot(np.abs(x) - 0.044, y + 0.004), 0.016)
    lower = 0.017 * _smoothstep(-0.005, -0.06, y) * _gauss(x, 0.034)  # the maxilla and jaw come forward
    across = np.clip(np.abs(x) / (MOUTH_HALF_WIDTH + 0.003), 0.0, 1.0)
    mouth_w = np.sqrt(1.0 - across**2)  # lips taper to the corners
    bow = 0.0012 * _gauss(np.abs(x) - 0.005, 0.004)  # the upper lip's peaks either side of the philtrum
    upper_lip = 0.007 * _gauss(y - (MOUTH_Y + 0.001 + 0.0045 * mouth_w + bow), 0.0035) * mouth_w
    lower_lip = 0.0085 * _gauss(y - (MOUTH_Y - 0.001 - 0.0055 * mouth_w), 0.0042) * mouth_w
    chin = 0.013 * _gauss(np.hypot(x / 1.6, y + 0.083), 0.013)
    return _nose(x, y) + _eyes(x, y) + brow + cheeks + lower + upper_lip + lower_lip + chin


def _axis(n: int, lo: float, hi: float, peaks: list[tuple[float, float, float]]) -> np.ndarray:
    """``n`` sorted angles in [lo, hi] whose density is 1 plus Gaussian ``peaks`` (centre, width, gain)."""
    fine = np.linspace(lo, hi, 4096)
    density = np.ones_like(fine)
    for centre, width, gain in peaks:
        density += gain * _gauss(fine - centre, width)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    return np.interp(np.linspace(0.0, cdf[-1], n), cdf, fine)


def _grid(num_vertices: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Azimuths (C,), elevations (R,) and the row of the mouth, sized for about ``num_vertices``."""
    A, B, _ = HEAD_RADII
    rows = max(24, int(round(np.sqrt(num_vertices / 1.25))))
    cols = max(31, int(round(num_vertices / rows)) | 1)  # odd: a column at θ = 0
    mouth_phi = np.arcsin(MOUTH_Y / B)
    eye_phi = np.arcsin(EYE_CENTRE[1] / B)
    phi = _axis(rows, np.radians(-68), np.radians(72), [(mouth_phi, 0.12, 2.2), (eye_phi, 0.1, 1.6)])
    phi[np.argmin(np.abs(phi - mouth_phi))] = mouth_phi
    half = _axis(cols // 2 + 1, 0.0, np.radians(108), [(0.0, 0.35, 1.2), (np.arcsin(EYE_CENTRE[0] / A), 0.12, 0.8)])
    theta = np.concatenate([-half[:0:-1], half])
    return theta, phi, int(np.argmin(np.abs(phi - mouth_phi)))


def _positions(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(R, C, 3) points of the skull ellipsoid plus the facial height field (faded out at the sides)."""
    A, B, C = HEAD_RADII
    th, ph = np.meshgrid(theta, phi)
    x = A * np.cos(ph) * np.sin(th)
    y = B * np.sin(ph)
    z = C * np.cos(ph) * np.cos(th)
    front = _smoothstep(0.15, 0.5, np.cos(th) * np.cos(ph))
    return np.stack([x, y, z + front * _face(x, y)], axis=-1)


def _triangulate(rows: int, cols: int, ids: np.ndarray) -> np.ndarray:
    """Two triangles per grid cell, wound so that normals point out of the head; ``ids`` (R, C).

    Diagonals alternate in a checkerboard so that paths along edges have no preferred direction.
    """
    a, b = ids[:-1, :-1], ids[:-1, 1:]
    c, d = ids[1:, 1:], ids[1:, :-1]
    r, q = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
    even = ((r + q) % 2 == 0).ravel()
    a, b, c, d = a.ravel(), b.ravel(), c.ravel(), d.ravel()
    first = np.where(even[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    second = np.where(even[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.concatenate([first, second])


def _cut_mouth(grid: np.ndarray, theta: np.ndarray, mouth_row: int):
    """Vertices (V,3), faces (F,3) and the slit's (corner, upper ids, lower ids, corner) columns."""
    rows, cols, _ = grid.shape
    ids = np.arange(rows * cols).reshape(rows, cols)
    A, B, _ = HEAD_RADII
    corner_theta = np.arcsin(MOUTH_HALF_WIDTH / (A * np.sqrt(1 - (MOUTH_Y / B) ** 2)))
    c0 = int(np.argmin(np.abs(theta + corner_theta)))
    c1 = int(np.argmin(np.abs(theta - corner_theta)))
    inner = np.arange(c0 + 1, c1)
    upper = ids[mouth_row, inner]
    lower = rows * cols + np.arange(inner.size)
    below = ids.copy()
    below[mouth_row, inner] = lower  # cells under the lip line use the lower lip's copies
    faces = np.concatenate([_triangulate(rows, cols, below[: mouth_row + 1]), _triangulate(rows, cols, ids[mouth_row:])])
    vertices = np.concatenate([grid.reshape(-1, 3), grid[mouth_row, inner]])
    x = vertices[upper, 0]
    part = np.sin(np.pi * (x - x.min() + 1e-9) / (x.max() - x.min() + 2e-9)) ** 0.6
    vertices[upper, 1] += 0.5 * REST_LIP_GAP * part
    vertices[lower, 1] -= 0.5 * REST_LIP_GAP * part
    return vertices, faces, (ids[mouth_row, c0], upper, lower, ids[mouth_row, c1])


def _ibug_points() -> np.ndarray:
    """(68, 2) analytic (x, y) of the iBUG landmarks; the inner lip (60–67) is placed on the slit later."""
    ex, ey = EYE_CENTRE
    ax, ay = EYE_HALF
    pts = np.zeros((68, 2))
    ang = np.radians(np.linspace(180.0, 360.0, 17))
    pts[0:17] = np.stack([0.066 * np.cos(ang), 0.022 + 0.105 * np.sin(ang)], 1)
    brow_x = np.linspace(0.052, 0.012, 5)
    brow_y = 0.047 + 0.006 * np.sin(np.linspace(0.3, 2.6, 5))
    pts[17:22] = np.stack([-brow_x, brow_y], 1)
    pts[22:27] = np.stack([brow_x[::-1], brow_y[::-1]], 1)
    pts[27:31] = np.stack([np.zeros(4), np.linspace(0.026, -0.012, 4)], 1)
    pts[31:36] = np.stack([np.linspace(-0.011, 0.011, 5), [-0.022, -0.0245, -0.026, -0.0245, -0.022]], 1)
    eye = np.radians([180.0, 130.0, 60.0, 0.0, -60.0, -130.0])  # outer, upper ×2, inner, lower ×2
    for side, start in ((-1.0, 36), (1.0, 42)):
        order = eye if side < 0 else np.pi - eye[[3, 2, 1, 0, 5, 4]]
        pts[start : start + 6] = np.stack([side * ex + ax * np.cos(order), ey + ay * np.sin(order)], 1)
    w, m = MOUTH_HALF_WIDTH + 0.001, MOUTH_Y
    outer = [(-w, m), (-0.016, m + 0.007), (-0.007, m + 0.010), (0.0, m + 0.0085), (0.007, m + 0.010),
             (0.016, m + 0.007), (w, m), (0.016, m - 0.009), (0.008, m - 0.013), (0.0, m - 0.0135),
             (-0.008, m - 0.013), (-0.016, m - 0.009)]
    pts[48:60] = np.asarray(outer)
    return pts


def _snap(vertices: np.ndarray, points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of the candidate vertex nearest in (x, y) to each point; (P,2) → (P,) int64."""
    d = np.linalg.norm(vertices[candidates, None, :2] - points[None], axis=-1)
    return candidates[np.argmin(d, axis=0)].astype(np.int64)


def make_procedural_head(num_vertices: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the analytic head.

    Args:
        num_vertices: about how many vertices the grid gets (at least a few hundred).

    Returns:
        vertices ``(V, 3)`` float64 metres, faces ``(F, 3)`` int64 (outward normals), landmarks ``(68,)``
        int64 vertex indices in iBUG order.
    """
    theta, phi, mouth_row = _grid(num_vertices)
    vertices, faces, (c0, upper, lower, c1) = _cut_mouth(_positions(theta, phi), theta, mouth_row)
    front = np.flatnonzero(vertices[:, 2] > 0.02)
    front = np.setdiff1d(front, np.concatenate([upper, lower, [c0, c1]]))
    landmarks = np.empty(68, dtype=np.int64)
    landmarks[:60] = _snap(vertices, _ibug_points()[:60], front)
    xs = np.array([-0.5, 0.0, 0.5]) * MOUTH_HALF_WIDTH
    landmarks[[60, 64]] = c0, c1
    landmarks[61:64] = _snap(vertices, np.stack([xs, np.full(3, MOUTH_Y)], 1), upper)
    landmarks[65:68] = _snap(vertices, np.stack([xs[::-1], np.full(3, MOUTH_Y)], 1), lower)
    vertices -= 0.5 * (vertices.min(0) + vertices.max(0))  # centred on its bounding box, like the template
    return vertices, faces.astype(np.int64), landmarks
