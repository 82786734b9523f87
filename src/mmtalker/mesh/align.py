"""Where a face of a checkpoint's topology sits against the checkpoint's own face: the rigid motion between them.

A network learns its faces where the training data put them. A template of the same topology placed elsewhere (a
head at standing height in a scene, a Z-up export from Blender) is another input to it than the same face in place,
and its mouth barely moves. :func:`rigid_alignment` finds the rotation and shift that bring such a face onto the
checkpoint's (least squares over the corresponding vertices, no scaling: units are checked apart, in
:mod:`mmtalker.mesh.scale`), so inference can run in the checkpoint's frame and turn the motion back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ANGLE_DEG = 5.0
"""A face turned less than this from the checkpoint's is taken as it is (another person's face of the same topology
differs by a degree or two)."""

MAX_SHIFT_SHARE = 0.05
"""A face shifted less than this share of the checkpoint face's size across is taken as it is (1.1 cm on FLAME's
head: other identities' faces sit within a few mm of each other)."""


MIN_SIZE_RATIO = 0.8
"""A face between this and its inverse times the reference's size is a face as it is (heads differ by ±15 %); beyond
(a scaled asset: 1.5×, 0.5×) it is brought to the reference's size to be animated, its motion scaled back with it."""

MAX_RESIDUAL_SHARE = 0.1
"""A face whose vertices stay farther than this share of the face's size (RMS) from the reference's after the best
move, turn and scaling is not the reference's face family vertex by vertex (another person's face of the topology:
under 1 %; vertices in another order: tens of %)."""


@dataclass(frozen=True)
class RigidAlignment:
    """``x ↦ x @ rotation.T + shift`` maps the face onto the reference; ``angle_deg`` and ``distance`` (reference units,
    between the two faces' centroids) say how far apart they were; ``mirrored``: ``rotation`` is a reflection (a face
    exported to a system of the other handedness), ``angle_deg`` then that of the turn beyond a mirror in a plane."""

    rotation: np.ndarray
    shift: np.ndarray
    angle_deg: float
    distance: float
    mirrored: bool = False

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 3) of the face's frame in the reference's frame."""
        return points @ self.rotation.T + self.shift

    def needed(self, reference_size: float) -> bool:
        """Whether the face is far enough from the reference (turned or moved) for the alignment to matter."""
        return self.mirrored or self.angle_deg > MAX_ANGLE_DEG or self.distance > MAX_SHIFT_SHARE * reference_size


def rigid_alignment(source: np.ndarray, target: np.ndarray) -> RigidAlignment:
    """The rotation (or, for a mirrored copy, the reflection) and shift bringing ``source`` (V, 3) onto ``target``
    (V, 3), vertex by vertex (Kabsch: of the proper rotation and the reflection, the one that fits better)."""
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    mu_s, mu_t = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_t
    u, _, vt = np.linalg.svd(a.T @ b)
    proper = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    fits = []
    for d in (proper, -proper):
        rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        fits.append((float(((a @ rotation.T - b) ** 2).sum()), rotation))
    rotation = min(fits, key=lambda fit: fit[0])[1]
    mirrored = bool(np.linalg.det(rotation) < 0)
    shift = mu_t - mu_s @ rotation.T
    # a rotation's angle from its trace (1 + 2 cos θ); a reflection's turn beyond a mirror in some plane from
    # its trace (1 + 2 cos θ - 2): 0° for a pure mirror in any plane
    cosine = (np.trace(rotation) + 1.0) / 2.0 if mirrored else (np.trace(rotation) - 1.0) / 2.0
    angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    return RigidAlignment(rotation.astype(np.float32), shift.astype(np.float32), angle,
                          float(np.linalg.norm(mu_t - mu_s)), mirrored)


def fit_residual(source: np.ndarray, target: np.ndarray) -> float:
    """RMS distance (target units) between ``target`` and ``source`` moved, turned (or mirrored) and scaled onto it as
    well as can be (Umeyama): what no placement or unit change explains, as another person's face of the same
    topology (small) or vertices in another order (large)."""
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    a, b = src - src.mean(0), dst - dst.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    rotation = vt.T @ u.T  # proper or reflection, whichever fits: the singular values' sum is the best correlation
    scale = s.sum() / max(float((a ** 2).sum()), 1e-30)
    return float(np.sqrt(((scale * a @ rotation.T - b) ** 2).sum(1).mean()))
