"""Synthetic identities: smooth, seeded deformations of the default face.

An identity is the sum of a few low-frequency fields placed with the landmarks, each scaled by a
coefficient drawn uniformly from [-amount, amount] (one seed, one face):

==================  =====================================================================
face width          x scaled about the midline (±4%)
jaw width           x scaled below the mouth, fading in from the lip line to the chin (±7%)
lower-face height   y scaled below the eyes (±4%)
nose                the nose tip region forward and down (Gaussian around landmark 30)
lip thickness       y scaled about the lip line, on the lips only (±18%)
eye spacing         each eye region moved along x, away from or toward the midline
brow height         the brows up or down
chin                the chin forward or back
==================  =====================================================================

Every field is smooth on the scale of the face (Gaussians at least 0.15 ``s`` wide, ``s`` the outer
eye-corner distance), a few millimetres at most, so the mesh stays valid: no triangle flips.
"""

from __future__ import annotations

import numpy as np

from mmtalker.synth.rig_fields import smoothstep

NUM_FIELDS = 8


def _gauss(vertices: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((vertices - centre) ** 2).sum(1) / sigma**2)


def identity_fields(vertices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``(NUM_FIELDS, V, 3)`` displacement fields (metres) of a face, each at coefficient 1."""
    v = np.asarray(vertices, dtype=np.float64)
    p = v[landmarks]
    s = float(np.linalg.norm(p[45] - p[36]))
    x, y = v[:, 0] - p[27, 0], v[:, 1]
    mouth_y, eye_y, chin_y = p[60:68, 1].mean(), p[36:48, 1].mean(), p[8, 1]
    zeros = np.zeros(len(v))
    fields = np.zeros((NUM_FIELDS, len(v), 3))
    fields[0, :, 0] = 0.04 * x
    fields[1, :, 0] = 0.07 * x * smoothstep(mouth_y, chin_y, y)
    fields[2, :, 1] = 0.04 * (y - eye_y) * smoothstep(eye_y, eye_y - 0.3 * s, y)
    nose = _gauss(v, p[30], 0.2 * s)
    fields[3] = np.stack([zeros, -0.02 * s * nose, 0.03 * s * nose], 1)
    lips = _gauss(v, p[48:68].mean(0), 0.22 * s)
    fields[4, :, 1] = 0.18 * (y - mouth_y) * lips
    for eye in (p[36:42].mean(0), p[42:48].mean(0)):
        fields[5, :, 0] += 0.025 * s * np.sign(eye[0] - p[27, 0]) * _gauss(v, eye, 0.22 * s)
    fields[6, :, 1] = 0.025 * s * (_gauss(v, p[17:22].mean(0), 0.2 * s) + _gauss(v, p[22:27].mean(0), 0.2 * s))
    fields[7, :, 2] = 0.035 * s * _gauss(v, p[8], 0.25 * s)
    return fields


def identity_offsets(face, seed: int, amount: float = 1.0) -> np.ndarray:
    """Per-vertex offsets ``(V,3)`` float32 (metres) that turn the default face into identity ``seed``.

    Args:
        face: a :class:`~mmtalker.synth.face.FaceTemplate`.
        seed: any integer; the same seed gives the same offsets.
        amount: scales every coefficient (0 gives the template itself; 1 a plausible spread).
    """
    coeffs = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, NUM_FIELDS) * float(amount)
    fields = identity_fields(face.mesh.vertices, face.landmarks)
    return np.tensordot(coeffs, fields, axes=1).astype(np.float32)
