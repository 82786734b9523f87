"""Exports of an animation for other tools: npz, an OBJ sequence, and glTF binary (GLB).

The GLB holds one mesh, the motion as **morph targets** (glTF's standard blend shapes, which Blender
imports as shape keys) and one animation channel driving their weights at the animation's frame times,
so the file plays with the audio's timing. To keep files small the motion is compressed to its
principal components (``max_targets`` at most) chosen so that the largest vertex error stays under
``tolerance``; the achieved error is returned and stored in the file's extras. Every weight lies in
[0, 1] (each target is scaled to its weights' span, the lowest weight folded into the mesh), the range
tools expect; the mesh's default weights give the rest shape. Checked in Blender 3.4's glTF importer
(tests/test_blender_import.py), which keeps a shape key's slider range from the first keyframe only and
so would clamp weights outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError

_GLB_MAGIC = 0x46546C67
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _check_animation(vertices: np.ndarray, faces: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    vertices = np.asarray(vertices, dtype=np.float32)
    if vertices.ndim != 3 or vertices.shape[2] != 3 or vertices.shape[0] == 0:
        raise MMTalkerError("animation", f"expected vertices of shape (T, V, 3) with T ≥ 1, got {vertices.shape}")
    if not np.all(np.isfinite(vertices)):
        raise MMTalkerError("animation", "has NaN or infinite coordinates")
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= vertices.shape[1]:
            raise MMTalkerError("template", f"its faces do not fit an animation of {vertices.shape[1]} vertices")
    return vertices, faces


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass --overwrite to replace it, or choose another --out")


def export_npz(path, vertices, *, fps: float, faces=None, overwrite: bool = False) -> Path:
    """``vertices`` (T, V, 3), ``fps`` and optionally ``faces`` (F, 3) in one compressed npz, written under a
    temporary name and renamed at the end: an interrupted write leaves no half file, and the one it replaces whole."""
    path = Path(path)
    vertices, faces = _check_animation(vertices, faces)
    _refuse_existing(path, overwrite)
    arrays = {"vertices": vertices, "fps": np.float64(fps)}
    if faces is not None:
        arrays["faces"] = faces.astype(np.int32)
    with written_whole(path) as f:
        np.savez_compressed(f, **arrays)
    return path


@contextlib.contextmanager
def written_whole(path: Path):
    """A binary file handle whose bytes become ``path`` only when the block ends without error: they go to a hidden
    temporary name beside it first (its folder made if new), renamed over ``path`` at the end, and removed when the
    block fails or is interrupted. So no half-written file is ever left, and the one an overwrite replaces stays whole
    until then."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _frame_files(folder: Path, prefix: str) -> list[Path]:
    """The files in ``folder`` named as :func:`export_obj_sequence` names its frames (``prefix_00012.obj``, five
    digits or more), whatever the number of frames of the export that wrote them."""
    pattern = re.compile(rf"{re.escape(prefix)}_[0-9]{{5,}}\.obj")
    return [p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file()]


def export_obj_sequence(folder, vertices, faces, *, overwrite: bool = False, prefix: str = "frame",
                        uv: np.ndarray | None = None, face_uv: np.ndarray | None = None) -> list[Path]:
    """One OBJ per frame, ``folder/frame_00000.obj`` …, sharing the template's faces (and its texture coordinates:
    ``uv`` (U, 2) with ``face_uv`` (F, 3) indices into it, as :class:`mmtalker.mesh.io.Mesh` holds them).

    A folder that is not empty is refused unless ``overwrite``; then the frame files of an earlier export that
    this one does not replace (a longer animation's last frames) are deleted, so the folder holds this
    animation's frames alone. Only files named like frames (``frame_`` and five digits or more, ``.obj``) are
    deleted; any other file in the folder stays. The frames are written into a hidden folder beside it first and
    moved in at the end, so an interrupted export leaves the folder as it was (and no half-written frame).
    """
    folder = Path(folder)
    vertices, faces = _check_animation(vertices, faces)
    if folder.exists() and not folder.is_dir():
        raise MMTalkerError(folder, "exists and is not a folder", "an obj export writes one file per frame into --out: pass a folder")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise MMTalkerError(folder, "exists and is not empty", "pass --overwrite or choose another --out")
    uv, face_uv = _check_uv(uv, face_uv, faces)
    staging = folder.with_name(f".{folder.name}.partial{os.getpid()}")
    staging.mkdir(parents=True)
    if uv is None:
        face_lines = "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces)
    else:
        face_lines = "".join(f"vt {s:.7g} {t:.7g}\n" for s, t in uv) + "".join(
            f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}\n" for (a, b, c), (ta, tb, tc) in zip(faces, face_uv))
    names = []
    width = max(5, len(str(len(vertices))))
    try:
        for t, frame in enumerate(vertices):
            name = f"{prefix}_{t:0{width}d}.obj"
            with open(staging / name, "w") as f:
                f.write("".join(f"v {x:.7g} {y:.7g} {z:.7g}\n" for x, y, z in frame))
                f.write(face_lines)
            names.append(name)
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = [folder / name for name in names]
    for stale in set(_frame_files(folder, prefix)) - set(paths):  # an earlier, longer export's frames
        stale.unlink()
    return paths


def _check_uv(uv, face_uv, faces: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Texture coordinates (U, 2) float32 and their per-corner indices (F, 3), checked against ``faces``; or Nones."""
    if uv is None and face_uv is None:
        return None, None
    if uv is None or face_uv is None:
        raise ValueError("uv and face_uv go together")
    uv = np.asarray(uv, np.float32)
    face_uv = np.asarray(face_uv, np.int64)
    if face_uv.shape != faces.shape or uv.ndim != 2 or uv.shape[1] != 2 or (face_uv.size and (
            face_uv.min() < 0 or face_uv.max() >= len(uv))):
        raise MMTalkerError("template", f"its texture coordinates ({uv.shape}, corners {face_uv.shape}) do not fit its "
                            f"{len(faces)} faces")
    return uv, face_uv


def split_at_uv_seams(faces: np.ndarray, face_uv: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For formats with one texture coordinate per vertex (glTF): a vertex with several UVs (on a seam) becomes one
    vertex per UV. Returns ``(source_vertex (N,), uv_index (N,), new_faces (F, 3))``: new vertex n copies vertex
    ``source_vertex[n]`` with UV ``uv_index[n]``; a vertex no face uses comes last, once, with ``uv_index`` -1."""
    pairs = np.stack([faces.ravel(), face_uv.ravel()], 1)
    unique, corner_to_new = np.unique(pairs, axis=0, return_inverse=True)
    loose = np.setdiff1d(np.arange(num_vertices), unique[:, 0])
    source = np.concatenate([unique[:, 0], loose]).astype(np.int64)
    uv_index = np.concatenate([unique[:, 1], np.full(len(loose), -1)]).astype(np.int64)
    return source, uv_index, corner_to_new.reshape(faces.shape).astype(np.int64)


def motion_basis(offsets: np.ndarray, *, max_targets: int, tolerance: float, fit_frames: int = 1500) -> tuple[np.ndarray, np.ndarray, float]:
    """Principal components of per-frame offsets (T, V, 3).

    Returns ``basis`` (K, V, 3) orthonormal, ``weights`` (T, K) and the max vertex error of
    ``weights @ basis`` against ``offsets`` over all frames. K is the smallest count whose max error is
    ≤ ``tolerance`` (or ``max_targets``). Long animations are fitted on ``fit_frames`` evenly spaced
    frames (then every frame is projected), which keeps minutes of speech fast.
    """
    t, v, _ = offsets.shape
    flat = offsets.reshape(t, v * 3).astype(np.float64)
    fit = flat[np.linspace(0, t - 1, min(t, fit_frames)).round().astype(int)]
    _, s, vt = np.linalg.svd(fit, full_matrices=False)
    keep = int(min(max_targets, np.sum(s > s[0] * 1e-9) if s.size and s[0] > 0 else 0))
    if keep == 0:  # no motion at all: one empty target keeps the file well-formed
        return np.zeros((1, v, 3)), np.zeros((t, 1)), 0.0
    fit_weights = fit @ vt[:keep].T
    k = keep
    for k in range(1, keep + 1):
        err = np.linalg.norm((fit_weights[:, :k] @ vt[:k] - fit).reshape(len(fit), v, 3), axis=-1).max()
        if err <= tolerance:
            break
    weights = flat @ vt[:k].T
    err = float(np.linalg.norm((weights @ vt[:k] - flat).reshape(t, v, 3), axis=-1).max())
    return vt[:k].reshape(k, v, 3), weights, err


class _BinaryBuffer:
    """Collects typed arrays into one 4-byte-aligned buffer, with bufferViews and accessors."""

    def __init__(self):
        self.data = bytearray()
        self.views, self.accessors = [], []

    def add(self, array: np.ndarray, *, component: int, kind: str, target: int | None = None, minmax: bool = False) -> int:
        raw = np.ascontiguousarray(array).tobytes()
        self.data += b"\0" * (-len(self.data) % 4)
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.data += raw
        self.views.append(view)
        count = array.shape[0] if kind != "SCALAR" or array.ndim == 1 else array.size
        accessor = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(count), "type": kind}
        if minmax:
            flat = array.reshape(int(count), -1)
            accessor["min"] = [float(x) for x in flat.min(axis=0)]
            accessor["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def export_glb(
    path, vertices, faces, *, fps: float, template=None, max_targets: int = 64, tolerance: float = 1e-4,
    name: str = "face", overwrite: bool = False, uv: np.ndarray | None = None, face_uv: np.ndarray | None = None,
) -> dict:
    """Writes a GLB whose morph-target animation reproduces ``vertices`` (T, V, 3) at ``fps``.

    The mesh carries smooth normals (NORMAL, and each morph target's change of them, so lighting follows the lips);
    with ``uv``/``face_uv`` (the template's texture coordinates) also TEXCOORD_0, a vertex on a UV seam written
    once per UV (:func:`split_at_uv_seams`).

    Args:
        template: (V, 3) rest shape of the mesh (default: the mean frame).
        max_targets: most morph targets to use; tolerance: max vertex error wanted (same unit as vertices).
        uv, face_uv: texture coordinates (U, 2) and their per-corner indices (F, 3), or None.
    Returns a dict with the file's path, the number of targets and the max vertex error.
    """
    path = Path(path)
    vertices, faces = _check_animation(vertices, faces)
    _refuse_existing(path, overwrite)
    if fps <= 0:
        raise MMTalkerError("fps", f"must be positive, got {fps}")
    base = vertices.mean(axis=0) if template is None else np.asarray(template, dtype=np.float32)
    if base.shape != vertices.shape[1:]:
        raise MMTalkerError("template", f"has shape {base.shape}, the animation's frames {vertices.shape[1:]}")
    basis, weights, err = motion_basis(vertices - base, max_targets=max_targets, tolerance=tolerance)
    # Weights in [0, 1] (see the module docstring): each target k is rescaled to its weights' span and the
    # lowest weight folded into the base shape; the mesh's default weights give back the rest shape.
    lo, span = weights.min(axis=0), np.ptp(weights, axis=0)
    span = np.where(span > 0, span, 1.0)
    rest_weights = -lo / span
    base = base + np.einsum("k,kvc->vc", lo, basis)
    basis, weights = basis * span[:, None, None], (weights - lo) / span
    times = np.arange(len(vertices), dtype=np.float32) / np.float32(fps)
    from mmtalker.render.renderer import vertex_normals

    # Normals on the whole topology (no crease along UV seams), fitted at the rest shape the default weights give:
    # each target's change of them over its whole weight range around the rest shape, the base normal below it
    # (made unit length, as glTF asks: at rest the blend is then not exact, within 0.8° for 99 % of the vertices and
    # 9–11° at worst on the synthetic and FLAME faces, against the zero-weight normals used before).
    rest = (base + np.einsum("k,kvc->vc", rest_weights, basis)).astype(np.float64)
    rest_normal = vertex_normals(rest, faces)
    normal_deltas = [vertex_normals(rest + (1.0 - r) * b, faces) - vertex_normals(rest - r * b, faces)
                     for r, b in zip(rest_weights, basis)]
    normal = rest_normal - sum((r * d for r, d in zip(rest_weights, normal_deltas)), np.zeros_like(rest_normal))
    loose = np.linalg.norm(rest_normal, axis=1) < 0.5  # in no face: glTF wants unit normals all the same
    normal[loose] = (0.0, 0.0, 1.0)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)  # glTF's NORMAL is unit length (viewers renormalise)
    for delta in normal_deltas:
        delta[loose] = 0.0
    uv, face_uv = _check_uv(uv, face_uv, faces)
    if uv is not None:
        source, uv_index, faces = split_at_uv_seams(faces, face_uv, len(base))
        base, basis, normal = base[source], basis[:, source], normal[source]
        normal_deltas = [d[source] for d in normal_deltas]

    buf = _BinaryBuffer()
    pos = buf.add(base.astype(np.float32), component=_FLOAT, kind="VEC3", target=_ARRAY_BUFFER, minmax=True)
    attributes = {"POSITION": pos, "NORMAL": buf.add(normal.astype(np.float32), component=_FLOAT, kind="VEC3",
                                                      target=_ARRAY_BUFFER)}
    if uv is not None:  # glTF's texture space has v pointing down the image; OBJ's (and ours) up
        own = np.where(uv_index >= 0, uv_index, 0)
        texcoord = np.where((uv_index >= 0)[:, None], np.stack([uv[own, 0], 1.0 - uv[own, 1]], 1), 0.0).astype(np.float32)
        attributes["TEXCOORD_0"] = buf.add(texcoord, component=_FLOAT, kind="VEC2", target=_ARRAY_BUFFER)
    idx = buf.add(faces.astype(np.uint32).ravel(), component=_UINT32, kind="SCALAR", target=_ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": buf.add(b.astype(np.float32), component=_FLOAT, kind="VEC3", target=_ARRAY_BUFFER, minmax=True),
                "NORMAL": buf.add(d.astype(np.float32), component=_FLOAT, kind="VEC3", target=_ARRAY_BUFFER)}
               for b, d in zip(basis, normal_deltas)]
    t_acc = buf.add(times, component=_FLOAT, kind="SCALAR", minmax=True)
    w_acc = buf.add(weights.astype(np.float32).ravel(), component=_FLOAT, kind="SCALAR")
    gltf = {
        "asset": {"version": "2.0", "generator": "mmtalker"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{
            "name": name,
            "primitives": [{"attributes": attributes, "indices": idx, "targets": targets, "mode": 4,
                            # split at UV seams: the vertex of the animation each one copies, for reading it back
                            **({"extras": {"sourceVertex": source.tolist()}} if uv is not None else {})}],
            "weights": [float(w) for w in rest_weights],  # the rest shape (``template``, else the mean frame)
            "extras": {"targetNames": [f"motion_{k:02d}" for k in range(len(targets))]},
        }],
        "animations": [{
            "name": "speech",
            "samplers": [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"}],
            "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}],
        }],
        "buffers": [{"byteLength": len(buf.data)}],
        "bufferViews": buf.views,
        "accessors": buf.accessors,
        "extras": {"fps": fps, "frames": int(len(vertices)), "max_vertex_error": err},
    }
    _write_glb(path, gltf, bytes(buf.data))
    return {"path": path, "targets": len(targets), "max_vertex_error": err}


def _write_glb(path: Path, gltf: dict, binary: bytes) -> None:
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    with written_whole(path) as f:
        f.write(struct.pack("<III", _GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(text), _JSON_CHUNK) + text)
        f.write(struct.pack("<II", len(binary), _BIN_CHUNK) + binary)


def read_glb(path) -> tuple[dict, bytes]:
    """A GLB file's glTF JSON (dict) and its binary chunk."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 20 or struct.unpack_from("<I", data, 0)[0] != _GLB_MAGIC:
        raise MMTalkerError(path, "is not a GLB file")
    json_len = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + json_len]), data[20 + json_len + 8:]


def read_glb_animation(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads back a GLB written by :func:`export_glb`: (vertices (T, V, 3), times (T,), faces (F, 3))."""
    return glb_animation(*read_glb(path))


def glb_animation(gltf: dict, binary: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The animation of a GLB :func:`export_glb` wrote, from :func:`read_glb`'s parts: (vertices, times, faces)."""
    dtypes = {_FLOAT: np.float32, _UINT32: np.uint32}
    widths = {"SCALAR": 1, "VEC3": 3}

    def accessor(i):
        acc = gltf["accessors"][i]
        view = gltf["bufferViews"][acc["bufferView"]]
        arr = np.frombuffer(binary, dtype=dtypes[acc["componentType"]], count=acc["count"] * widths[acc["type"]], offset=view["byteOffset"])
        return arr.reshape(acc["count"], widths[acc["type"]]) if acc["type"] != "SCALAR" else arr

    prim = gltf["meshes"][0]["primitives"][0]
    base = accessor(prim["attributes"]["POSITION"])
    basis = np.stack([accessor(t["POSITION"]) for t in prim["targets"]])
    sampler = gltf["animations"][0]["samplers"][0]
    times = accessor(sampler["input"])
    weights = accessor(sampler["output"]).reshape(len(times), len(basis))
    vertices = base[None] + np.einsum("tk,kvc->tvc", weights, basis)
    faces = accessor(prim["indices"]).reshape(-1, 3).astype(np.int64)
    source = (prim.get("extras") or {}).get("sourceVertex")
    if source is not None:  # split at UV seams on export: back to the animation's own vertices
        source = np.asarray(source, np.int64)
        merged = np.empty((len(vertices), int(source.max()) + 1, 3), np.float32)
        merged[:, source] = vertices
        return merged, times, source[faces]
    return vertices.astype(np.float32), times, faces
