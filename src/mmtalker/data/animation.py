"""Animation files as mmtalker and the peers write them: ``.npy`` (T, V, 3) or (T, V·3), or our ``.npz``."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from mmtalker.data.formats.common import numpy_failure
from mmtalker.errors import MMTalkerError


def _stored_fps(path: Path, value: np.ndarray, fps_override: float | None) -> float | None:
    """An .npz's ``fps`` entry as a float. One that is not a single finite number above 0 raises MMTalkerError
    naming ``path``, unless the caller has a frame rate of its own (``fps_override``): then it is None."""
    value = np.asarray(value)
    number = value.size == 1 and (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating))
    fps = float(value.reshape(())) if number else None
    if fps is not None and math.isfinite(fps) and fps > 0:
        return fps
    if fps_override is not None:
        return None
    shown = f"{fps:g}" if fps is not None else f"an array of shape {value.shape} and type {value.dtype}"
    raise MMTalkerError(path, f"stores fps {shown}, not a frame rate above 0",
                        "pass --fps to override it, or rewrite the file with 'mmtalker export --format npz --fps'")


def load_animation(path, *, num_vertices: int | None = None, fps_override: float | None = None,
                   against: str = "the template") -> tuple[np.ndarray, float | None]:
    """Reads an animation; returns ``(vertices (T, V, 3) float32, fps or None)``.

    ``.npy`` files hold the vertices alone (flattened (T, V·3) as FaceFormer and CodeTalker save them,
    or (T, V, 3)); ``.npz`` files (from ``mmtalker animate``/``export``) hold ``vertices`` and ``fps``.
    ``num_vertices`` resolves the flattened form and checks the vertex count. A stored fps that is not a
    finite number above 0 is an error, unless the caller passes the frame rate it uses instead
    (``fps_override``, the user's ``--fps``): then it is returned as None.
    """
    path = Path(path)
    if not path.is_file():
        raise MMTalkerError(path, "animation file not found")
    fps = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "vertices" not in data:
                    raise MMTalkerError(path, f"has no 'vertices' array (it holds {sorted(data.files)})")
                verts = np.asarray(data["vertices"])
                fps = _stored_fps(path, data["fps"], fps_override) if "fps" in data else None
        elif path.suffix.lower() == ".npy":
            verts = np.load(path, allow_pickle=False)
        else:
            check_animation_type(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MMTalkerError(path, f"cannot be read as a numpy array ({numpy_failure(path, exc)})") from None
    if verts.ndim == 2:
        if verts.shape[1] % 3:
            raise MMTalkerError(path, f"has shape {verts.shape}; a flattened animation needs V·3 columns")
        verts = verts.reshape(verts.shape[0], -1, 3)
    if verts.ndim != 3 or verts.shape[2] != 3 or verts.shape[0] == 0:
        raise MMTalkerError(path, f"has shape {verts.shape}; expected (T, V, 3) or (T, V*3) with T ≥ 1")
    if not np.issubdtype(verts.dtype, np.number) or not np.all(np.isfinite(verts)):
        raise MMTalkerError(path, "has NaN, infinite or non-numeric values")
    if num_vertices is not None and verts.shape[1] != num_vertices:
        raise MMTalkerError(path, f"has {verts.shape[1]} vertices but {against} has {num_vertices}",
                            "pass the template the animation was made for" if against == "the template" else
                            f"the animation must be of {against}'s mesh")
    return verts.astype(np.float32), fps


def stored_faces(path) -> np.ndarray | None:
    """The triangles (F, 3) an ``.npz`` animation carries (``mmtalker animate`` and ``export`` write them), else None."""
    path = Path(path)
    if not path.is_file():
        raise MMTalkerError(path, "animation file not found")
    if path.suffix.lower() != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            faces = np.asarray(data["faces"]) if "faces" in data else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MMTalkerError(path, f"cannot be read as a numpy array ({numpy_failure(path, exc)})") from None
    if faces is not None and (faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer)):
        raise MMTalkerError(path, f"its 'faces' array has shape {faces.shape} and type {faces.dtype}; expected (F, 3) integers")
    return faces


def topology_for(animations, template) -> tuple[np.ndarray, np.ndarray | None]:
    """The faces (F, 3) to draw or export the ``animations`` (paths) with, and the rest shape (V, 3) when a
    ``template`` mesh file is given; without one, the faces the first ``.npz`` among them carries and no rest shape."""
    for path in animations:  # the kind of file first: a mesh, a video or a GLB export is no animation to read
        check_animation_type(path)
    if template is not None:
        from mmtalker.mesh.io import load_mesh

        mesh = load_mesh(template)
        return np.asarray(mesh.faces), np.asarray(mesh.vertices)
    for path in animations:
        faces = stored_faces(path)
        if faces is not None:
            return faces, None
    raise MMTalkerError(animations[0], "holds no faces to draw the mesh with (a .npy, or an .npz without a 'faces' "
                        "array, holds vertices only)", "pass --template MESH, a mesh file with the animation's topology")


def check_animation_type(path) -> None:
    """Refuse a file that is not an animation mmtalker reads (``.npy``/``.npz``, any case), naming what it looks like."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return
    kinds = {".glb": "a glTF export (it cannot be read back; render or export the .npz it was made from)",
             ".gltf": "a glTF file", ".obj": "a mesh file (give it as --template)", ".ply": "a mesh file (give it as --template)",
             ".mp4": "a video", ".wav": "a speech file (animate it first: mmtalker animate)",
             ".flac": "a speech file (animate it first: mmtalker animate)", ".mp3": "a speech file (animate it first: mmtalker animate)"}
    raise MMTalkerError(path, f"is not an animation file{': ' + kinds[suffix] if suffix in kinds else ''}",
                        "expected the .npz or .npy of mmtalker animate (or another tool's (T, V·3) .npy)")


def load_animations(paths, template, *, fps_override: float | None = None
                    ) -> tuple[list[tuple[np.ndarray, float | None]], np.ndarray, np.ndarray | None]:
    """``(load_animation(path) for each path, faces, rest shape or None)``, every animation checked against the
    template's vertex count, or (without a template) against the first one's and the stored faces.
    ``fps_override``: the user's ``--fps``, which makes a bad stored fps no error (see :func:`load_animation`)."""
    faces, rest = topology_for(paths, template)
    loaded = [load_animation(p, num_vertices=None if rest is None else len(rest), fps_override=fps_override) for p in paths]
    for path, (verts, _) in zip(paths, loaded):
        if verts.shape[1] != loaded[0][0].shape[1]:
            raise MMTalkerError(path, f"has {verts.shape[1]} vertices, {paths[0]} {loaded[0][0].shape[1]}",
                                "animations shown together must share one topology")
        if rest is None and faces.size and (faces.min() < 0 or faces.max() >= verts.shape[1]):
            raise MMTalkerError(path, f"its {verts.shape[1]} vertices do not fit the faces stored in the .npz "
                                f"(they index up to {faces.max()})", "pass --template MESH")
    return loaded, faces, rest
