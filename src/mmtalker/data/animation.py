"""Animation files as mmtalker and the peers write them: ``.npy`` (T, V, 3) or (T, V·3), or our ``.npz``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError


def load_animation(path, *, num_vertices: int | None = None) -> tuple[np.ndarray, float | None]:
    """Reads an animation; returns ``(vertices (T, V, 3) float32, fps or None)``.

    ``.npy`` files hold the vertices alone (flattened (T, V·3) as FaceFormer and CodeTalker save them,
    or (T, V, 3)); ``.npz`` files (from ``mmtalker animate``/``export``) hold ``vertices`` and ``fps``.
    ``num_vertices`` resolves the flattened form and checks the vertex count.
    """
    path = Path(path)
    if not path.is_file():
        raise MMTalkerError(path, "animation file not found")
    fps = None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "vertices" not in data:
                    raise MMTalkerError(path, f"has no 'vertices' array (it holds {sorted(data.files)})")
                verts = np.asarray(data["vertices"])
                fps = float(data["fps"]) if "fps" in data else None
        elif path.suffix == ".npy":
            verts = np.load(path, allow_pickle=False)
        else:
            raise MMTalkerError(path, "is not an animation file", "expected .npy or .npz")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MMTalkerError(path, f"cannot be read as a numpy array ({exc})") from exc
    if verts.ndim == 2:
        if verts.shape[1] % 3:
            raise MMTalkerError(path, f"has shape {verts.shape}; a flattened animation needs V·3 columns")
        verts = verts.reshape(verts.shape[0], -1, 3)
    if verts.ndim != 3 or verts.shape[2] != 3 or verts.shape[0] == 0:
        raise MMTalkerError(path, f"has shape {verts.shape}; expected (T, V, 3) or (T, V*3) with T ≥ 1")
    if not np.issubdtype(verts.dtype, np.number) or not np.all(np.isfinite(verts)):
        raise MMTalkerError(path, "has NaN, infinite or non-numeric values")
    if num_vertices is not None and verts.shape[1] != num_vertices:
        raise MMTalkerError(path, f"has {verts.shape[1]} vertices but the template has {num_vertices}",
                            "pass the template the animation was made for")
    return verts.astype(np.float32), fps
