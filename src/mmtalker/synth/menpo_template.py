"""menpo3d's face template (BSD-3), turned into a light, human-sized default face.

The source package of menpo3d 0.8.6 carries ``menpo3d/data/template.ply`` (53,349 vertices, one
piece with two boundary loops: the outer edge and the open mouth) and ``template.ljson`` (68 iBUG
landmarks as 3D points). This module reads the two files, puts the face in FLAME/VOCASET's frame
(metres, +y up, +z toward the viewer, +x toward the subject's left, outer eye corners
:data:`EYE_CORNER_DISTANCE` apart) and reduces it to a few thousand vertices.

Reduction: libigl's ``qslim`` (quadric error edge collapses) keeps the mouth opening as a hole. To
keep more vertices where speech and blinks happen, space is first magnified around the mouth and
the eyes by a smooth radial warp (injective: its radial profile stays monotone), the warped mesh is
reduced, and the result is mapped back through the inverse warp. Edges near the lips and eyelids thus
come out about two to three times shorter than elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError

EYE_CORNER_DISTANCE = 0.095
"""Metres between the outer eye corners (landmarks 36 and 45): an adult's, as in FLAME's mean head."""
MAGNIFY = (("mouth", 0.26, 1.5), ("eye_right", 0.19, 1.2), ("eye_left", 0.19, 1.2))
"""(centre, radius in eye-corner distances, gain) of each magnified spot; gain < 2.2 keeps the warp injective."""


def read_template(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices ``(V,3)`` float64 and faces ``(F,3)`` of template.ply, landmark points ``(68,3)`` of template.ljson."""
    from mmtalker.mesh.io import load_mesh

    mesh = load_mesh(folder / "template.ply")
    path = folder / "template.ljson"
    try:
        points = np.asarray(json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MMTalkerError(path, f"cannot read the landmarks ({err})", "delete the folder and fetch the template again")
    if points.shape != (68, 3) or not np.all(np.isfinite(points)):
        raise MMTalkerError(path, f"expected 68 finite 3D landmarks, got an array of shape {points.shape}")
    return mesh.vertices.astype(np.float64), mesh.faces, points


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation ``(3,3)`` (rows: the face's x, y, z axes), origin ``(3,)`` and scale to metres, from landmarks ``(68,3)``."""
    x = points[45] - points[36]  # toward the subject's left
    up = points[36:48].mean(0) - points[8]  # chin to eyes
    x = x / np.linalg.norm(x)
    y = up - (up @ x) * x
    y = y / np.linalg.norm(y)
    rotation = np.stack([x, y, np.cross(x, y)])
    scale = EYE_CORNER_DISTANCE / np.linalg.norm(points[45] - points[36])
    if (points[30] - points[36:48].mean(0)) @ rotation[2] <= 0:
        raise MMTalkerError("template.ljson", "the nose tip is not in front of the eyes: the landmarks are not a face")
    return rotation, points[36:48].mean(0), scale


def to_face_frame(vertices: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and landmark points in metres, oriented, centred on the mesh's bounding box."""
    rotation, origin, scale = face_frame(points)
    v = (vertices - origin) @ rotation.T * scale
    p = (points - origin) @ rotation.T * scale
    centre = 0.5 * (v.min(0) + v.max(0))
    return v - centre, p - centre


def _spots(points: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    centres = {"mouth": points[60:68].mean(0), "eye_right": points[36:42].mean(0), "eye_left": points[42:48].mean(0)}
    size = np.linalg.norm(points[45] - points[36])
    return [(centres[name], radius * size, gain) for name, radius, gain in MAGNIFY]


def _warp(x: np.ndarray, centre: np.ndarray, sigma: float, gain: float) -> np.ndarray:
    d = x - centre
    return centre + d * (1.0 + gain * np.exp(-(d * d).sum(1, keepdims=True) / (2 * sigma**2)))


def magnify(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The warp that enlarges the mouth and eyes: ``(N,3) → (N,3)``."""
    for centre, sigma, gain in _spots(points):
        x = _warp(x, centre, sigma, gain)
    return x


def unmagnify(y: np.ndarray, points: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Inverse of :func:`magnify` by damped fixed-point iteration (each radial warp is monotone)."""
    for centre, sigma, gain in reversed(_spots(points)):
        x = y.copy()
        for _ in range(iterations):
            x += (y - _warp(x, centre, sigma, gain)) / (1.0 + gain)
        y = x
    return y


def reduce_template(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, num_vertices: int):
    """Reduce to about ``num_vertices`` vertices, keeping one piece with its outer edge and mouth.

    Returns:
        vertices ``(V',3)`` float64 and faces ``(F',3)`` int64.
    """
    import igl

    warped = magnify(vertices, points)
    # Euler: a piece with two boundary loops has F = 2V - B faces, B its boundary vertices (about 4·√V here)
    reduced, faces_out = _qslim(igl, warped, faces, int(2 * num_vertices - 4 * np.sqrt(num_vertices)))
    return unmagnify(reduced, points), faces_out.astype(np.int64)


def _qslim(igl, vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """``igl.qslim`` to at most ``max_faces`` faces, with vertices no face uses dropped."""
    reduced, faces_out, _, _ = igl.qslim(vertices, np.asarray(faces, dtype=np.int64), int(max_faces))
    used = np.unique(faces_out)
    remap = np.full(len(reduced), -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return reduced[used], remap[faces_out]
