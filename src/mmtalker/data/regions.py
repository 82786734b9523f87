"""Vertex region sets (lips, eyes, upper face) from the files users have, for metrics and loss weights.

Accepted files:

- FLAME's ``FLAME_masks.pkl`` (a Python 2 pickle: dict of name -> index array), through the restricted
  :func:`mmtalker.data.safe_pickle.load_pickle`; any other pickle holding a dict of index arrays.
- ``.npz`` (key -> array) and ``.npy`` (one array), read without pickle.
- Text files (``lve.txt``, ``fdd.txt``...): indices separated by commas (with or without spaces),
  semicolons, spaces or newlines.

Each array is either **indices** (integers, or whole-number floats) or a **per-vertex weight mask**:
booleans, floats all within [0, 1], or integers that are all 0 or 1 (more than two of them); a float mask
keeps the vertices with ``weight >= threshold``, a 0/1 mask those with 1. Indices are
returned sorted and unique; how many duplicates were dropped is counted (FLAME's ``lips`` lists 254
entries, 250 of them unique), so reports can say so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtalker.data.formats.common import numpy_failure
from mmtalker.data.safe_pickle import load_pickle
from mmtalker.errors import MMTalkerError

PICKLE_SUFFIXES = (".pkl", ".pickle")
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class Region:
    """One set of vertices.

    Attributes:
        name: the key in a multi-set file, else the file's stem.
        indices: ``(K,)`` int64 vertex indices, sorted, unique, K >= 1.
        duplicates: entries dropped because they repeated an index (0 for masks).
        source: where it came from, e.g. ``"FLAME_masks.pkl[lips]"`` or ``"lve.txt"`` (full paths).
    """

    name: str
    indices: np.ndarray
    duplicates: int
    source: str

    def __len__(self) -> int:
        return int(self.indices.shape[0])


# --------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if b"\x00" in data:
        raise MMTalkerError(path, "not a text region file (it holds binary data)", "give a .txt, .npz, .npy or .pkl file")
    tokens = [t for t in _SEPARATORS.split(data.decode("utf-8", errors="replace")) if t]
    try:
        return np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        pass
    except OverflowError:
        raise MMTalkerError(path, "an index is far too large", "the file is corrupt") from None
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise MMTalkerError(path, f"not a list of vertex indices: {bad[:40]!r} is not a number") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_numpy(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """An ``.npz`` as a dict, an ``.npy`` as one array (by content, whatever the suffix), never unpickling."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as exc:  # noqa: BLE001 - numpy and zipfile raise many types on corrupt files
        raise MMTalkerError(
            path, f"not a readable numpy file ({numpy_failure(path, exc)})", "the file is corrupt or truncated"
        ) from None


def _read_raw(path: Path) -> dict[str, object] | object:
    """The file's content: a dict for multi-set files, else one array-like."""
    if not path.exists():
        raise MMTalkerError(path, "no such file", "check the path")
    if path.is_dir():
        raise MMTalkerError(path, "is a folder, not a region file")
    suffix = path.suffix.lower()
    try:
        if suffix in PICKLE_SUFFIXES:
            return load_pickle(path)
        if suffix in (".npz", ".npy"):
            return _read_numpy(path)
        return _read_text(path)
    except OSError as exc:
        raise MMTalkerError(path, f"cannot read the file ({exc.strerror or exc})") from None


# ------------------------------------------------------------------------------------------ validation


def _as_indices(what: str, values, threshold: float, num_vertices: int | None) -> tuple[np.ndarray, int]:
    """Turn one stored array into ``(sorted unique indices, duplicates)``; masks are thresholded."""
    try:
        arr = np.asarray(values)
    except Exception:  # noqa: BLE001 - ragged or odd containers from a pickle
        arr = np.asarray([], dtype=object)
    if arr.ndim > 1 and sum(s > 1 for s in arr.shape) <= 1:
        arr = arr.reshape(-1)  # (K, 1) or (1, K)
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":
        raise MMTalkerError(what, f"not a list of vertex indices (got {arr.dtype} array of shape {arr.shape})")
    if arr.size == 0:
        raise MMTalkerError(what, "the region is empty")
    if arr.dtype.kind == "b" or (arr.dtype.kind in "iu" and arr.size > 2 and np.isin(arr, (0, 1)).all()):
        # booleans, or 0/1 integers: more than two entries of only 0 and 1 cannot be a useful index list
        return _from_mask(what, arr.astype(np.float64), 0.5, num_vertices)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise MMTalkerError(what, "holds NaN or infinite values")
        if arr.min() >= 0 and arr.max() <= 1:
            return _from_mask(what, arr, threshold, num_vertices)
        if not np.all(arr == np.round(arr)):
            bad = arr[arr != np.round(arr)][0]
            raise MMTalkerError(what, f"non-integer vertex index {bad:g}", "weight masks must lie in [0, 1]")
        if arr.max() >= 2.0**62:
            raise MMTalkerError(what, "an index is far too large")
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise MMTalkerError(what, f"negative vertex index {int(arr.min())}")
    if arr.dtype.kind == "u" and arr.max() >= 2**63:
        raise MMTalkerError(what, "an index is far too large")
    unique = np.unique(arr.astype(np.int64))
    return unique, int(arr.size - unique.size)


def _from_mask(what: str, weights: np.ndarray, threshold: float, num_vertices: int | None) -> tuple[np.ndarray, int]:
    if num_vertices is not None and len(weights) != num_vertices:
        raise MMTalkerError(
            what, f"a per-vertex mask of {len(weights)} entries for a mesh of {num_vertices} vertices",
            "is this region file for another topology?",
        )
    indices = np.flatnonzero(weights >= threshold).astype(np.int64)
    if indices.size == 0:
        raise MMTalkerError(what, f"no vertex has weight >= {threshold:g} in this mask", "lower the threshold")
    return indices, 0


def _make_region(name: str, source: str, values, threshold: float, num_vertices: int | None) -> Region:
    indices, duplicates = _as_indices(source, values, threshold, num_vertices)
    if num_vertices is not None and indices[-1] >= num_vertices:
        raise MMTalkerError(
            source, f"vertex index {int(indices[-1])} is out of range for a mesh of {num_vertices} vertices",
            "is this region file for another topology?",
        )
    return Region(name=name, indices=indices, duplicates=duplicates, source=source)


# ---------------------------------------------------------------------------------------------- public


def load_region_sets(path: str | os.PathLike, *, threshold: float = 0.5, num_vertices: int | None = None) -> dict[str, Region]:
    """Every region in a file: all keys of a multi-set file (pkl dict, npz), or one set named after the file.

    Args:
        path: ``FLAME_masks.pkl``, ``.npz``, ``.npy`` or a text file of indices.
        threshold: weight masks keep vertices with ``weight >= threshold``.
        num_vertices: when given, indices must be below it.

    Returns:
        ``{name: Region}`` in the file's order.
    """
    path = Path(path)
    raw = _read_raw(path)
    if isinstance(raw, dict):
        if not raw:
            raise MMTalkerError(path, "holds no regions (an empty dictionary)")
        return {str(k): _make_region(str(k), f"{path}[{k}]", v, threshold, num_vertices) for k, v in raw.items()}
    return {path.stem: _make_region(path.stem, str(path), raw, threshold, num_vertices)}


def load_region(
    path: str | os.PathLike, key: str | None = None, *, threshold: float = 0.5, num_vertices: int | None = None
) -> Region:
    """One region from a file.

    Args:
        path: see :func:`load_region_sets`.
        key: which set of a multi-set file (e.g. ``"lips"``); may be omitted when the file holds one set.
        threshold: weight masks keep vertices with ``weight >= threshold``.
        num_vertices: when given, indices must be below it.

    Returns:
        :class:`Region` with sorted unique indices and the number of duplicates dropped.

    Raises:
        MMTalkerError: unreadable file, unknown key (the message lists the available ones), empty region,
        negative or non-integer indices, index >= ``num_vertices``.
    """
    path = Path(path)
    raw = _read_raw(path)
    if not isinstance(raw, dict):
        if key is not None:
            raise MMTalkerError(path, f"holds a single region, so there is no key {key!r} to pick", "leave the key out")
        return _make_region(path.stem, str(path), raw, threshold, num_vertices)
    keys = [str(k) for k in raw]
    if key is None:
        if len(raw) != 1:
            raise MMTalkerError(path, f"holds {len(raw)} regions; say which one", f"available: {', '.join(keys)}")
        key = keys[0]
    lookup = {str(k): v for k, v in raw.items()}
    if key not in lookup:
        raise MMTalkerError(path, f"no region named {key!r}", f"available: {', '.join(keys) or 'none'}")
    return _make_region(key, f"{path}[{key}]", lookup[key], threshold, num_vertices)
