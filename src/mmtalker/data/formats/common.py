"""Pieces shared by the dataset readers: opening motion arrays, naming sequences, templates, checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmtalker.data.manifest import Manifest
from mmtalker.errors import MMTalkerError

_NPY_ERRORS = (ValueError, OSError, EOFError, TypeError)
_NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")  # .npy; .npz (a zip archive, or an empty one)


def numpy_failure(path: Path, exc: Exception) -> str:
    """Why numpy could not read ``path``, in words: a file that is no numpy file at all says so (numpy's own
    words for it, "Cannot load file containing pickled data", mislead), else numpy's message."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if head and not head.startswith(_NUMPY_MAGIC):
        return "it starts with neither the .npy header nor a zip archive's"
    if "allow_pickle" in str(exc) or "Python objects" in str(exc):  # numpy's words for an array of Python objects
        return "it holds Python objects (pickled), which mmtalker does not load; save a plain numeric array"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def open_npy(path: Path, what: str | None = None) -> np.ndarray:
    """Memory-map a ``.npy`` file (nothing is read but its header).

    Raises:
        MMTalkerError: missing, truncated (shorter than its header says), or not a plain numeric array.
    """
    what = what or str(path)
    if not path.is_file():
        raise MMTalkerError(what, "no such file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _NPY_ERRORS as exc:
        reason = numpy_failure(path, exc)
        if "Python objects" in reason:
            raise MMTalkerError(what, f"not a numeric .npy array: {reason}") from None
        raise MMTalkerError(what, f"corrupt or truncated .npy file ({reason})", "copy or export the file again") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        names = ", ".join(array.files[:5])
        array.close()
        raise MMTalkerError(what, f"is an .npz archive (holding {names}) under a .npy name",
                            "save the motion array alone with np.save, or rename the file and read its array")
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise MMTalkerError(what, f"expected a numeric array, got {getattr(array, 'dtype', type(array))}")
    return array


def as_frames(array: np.ndarray, num_vertices: int, what: str) -> np.ndarray:
    """View ``(T, V*3)`` or ``(T, V, 3)`` motion as ``(T, V, 3)``, checking ``V`` against the manifest."""
    if array.ndim == 2 and array.shape[1] % 3 == 0:
        array = array.reshape(array.shape[0], array.shape[1] // 3, 3)
    if array.ndim != 3 or array.shape[2] != 3:
        raise MMTalkerError(what, f"expected motion of shape (T, V*3) or (T, V, 3), got {array.shape}")
    if array.shape[1] != num_vertices:
        raise MMTalkerError(
            what,
            f"has {array.shape[1]} vertices per frame, the dataset has {num_vertices}",
            "is the preset right for this data (--preset vocaset|biwi|multiface)?",
        )
    if array.shape[0] == 0:
        raise MMTalkerError(what, "holds no frames")
    return array


def split_key(key: str, subjects: list[str], what: str) -> tuple[str, str]:
    """Split ``"<subject>_<sentence>"`` into its parts.

    A known subject name that prefixes the key wins (the longest, so names may contain underscores);
    otherwise the key is split at its last underscore (``"FaceTalk_170728_03272_TA_sentence01"``, ``"F2_e01"``).
    """
    matches = [s for s in subjects if key.startswith(s + "_") and len(key) > len(s) + 1]
    if matches:
        subject = max(matches, key=len)
        return subject, key[len(subject) + 1 :]
    subject, sep, sentence = key.rpartition("_")
    if not sep or not subject or not sentence:
        raise MMTalkerError(what, f"file name '{key}' is not <subject>_<sentence>", "rename it, e.g. F2_e01.npy")
    return subject, sentence


def resolve(root: Path, relative: str) -> Path:
    """A manifest path: absolute as given, else relative to the dataset folder."""
    path = Path(os.path.expanduser(relative))
    return path if path.is_absolute() else root / path


def load_templates(root: Path, manifest: Manifest, what: str) -> dict[str, np.ndarray]:
    """Every subject's neutral face as ``(V, 3)`` float32, from the manifest's ``templates`` entry.

    Accepts a ``.pkl`` (read with the restricted unpickler; Python 2 pickles too) or ``.npz`` file mapping
    subject -> ``(V, 3)`` or flat ``(V*3,)``, or a dict subject -> mesh file.
    """
    spec = manifest.templates
    if spec is None:
        raise MMTalkerError(what, "the manifest names no templates", "add \"templates\": \"templates.pkl\" to it")
    if isinstance(spec, dict):
        from mmtalker.mesh.io import load_mesh

        raw = {subject: load_mesh(resolve(root, file)).vertices for subject, file in spec.items()}
        where = {subject: str(resolve(root, file)) for subject, file in spec.items()}
    else:
        path = resolve(root, spec)
        raw = _read_template_file(path)
        where = {subject: f"{path} [{subject}]" for subject in raw}
    templates = {s: _check_template(v, manifest.num_vertices, where[s]) for s, v in raw.items()}
    _check_template_scales(templates, where)
    return templates


def _check_template_scales(templates: dict[str, np.ndarray], where: dict[str, str]) -> None:
    """Refuse a template in other units than the others (one subject's face in mm among faces in m): compared with
    the median template's size, by the same 3× rule as every face pairing (:mod:`mmtalker.mesh.scale`)."""
    from mmtalker.mesh.scale import check_same_scale

    if len(templates) < 3:  # with two, which one is wrong cannot be told; the motion check still finds it
        return
    sizes = {s: float(np.ptp(t, axis=0).max()) for s, t in templates.items()}
    if min(sizes.values()) <= 0:
        return
    median = sorted(sizes, key=sizes.get)[len(sizes) // 2]
    for subject, template in templates.items():
        check_same_scale(where[subject], template, templates[median], f"the median subject's template ({median})",
                         "every template must be in the dataset's length unit (mm and m differ 1000×)")


def check_motion_scales(sequences: list, templates: dict[str, np.ndarray]) -> None:
    """Refuse a motion file in other units than its subject's template, by its first frame (same 3× rule): one such
    file among many would train and score nonsense without a word."""
    from mmtalker.mesh.scale import check_same_scale

    sized = {s for s, t in templates.items() if np.ptp(t, axis=0).max() > 0}  # a flat point gives no size to compare
    for seq in sequences:
        if seq.subject in sized:
            check_same_scale(seq.what, seq.first_frame(), templates[seq.subject], f"the template of {seq.subject}",
                             "motion and templates must be in the dataset's length unit (mm and m differ 1000×); "
                             "convert this file")


def _read_template_file(path: Path) -> dict:
    if not path.is_file():
        raise MMTalkerError(path, "templates file not found", "the dataset needs every subject's neutral face there")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: np.asarray(data[name]) for name in data.files}
        except _NPY_ERRORS as exc:
            raise MMTalkerError(path, f"corrupt .npz file ({numpy_failure(path, exc)})") from None
    from mmtalker.data.safe_pickle import load_pickle

    data = load_pickle(path)
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise MMTalkerError(path, "expected a dict subject name -> (V, 3) array")
    return data


def _check_template(value, num_vertices: int, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 1 and array.size == num_vertices * 3:
        array = array.reshape(num_vertices, 3)
    if array.shape != (num_vertices, 3) or not np.issubdtype(array.dtype, np.number):
        raise MMTalkerError(what, f"template of shape {array.shape}, expected ({num_vertices}, 3)",
                            f"the manifest or preset says {num_vertices} vertices: is it the right --preset for this folder?")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise MMTalkerError(what, "template has NaN or infinite coordinates")
    return array


MAX_DURATION_SHARE = 0.4
"""Audio and motion may differ by at most this share of the longer one, whatever ``duration_tolerance`` allows:
motion stored at 30 fps but read as 60 lasts half its audio, which a tolerance of seconds lets pass on short clips."""


MIN_DURATION_GAP = 0.25
"""...and by more than this many seconds: a few frames on a clip of a few frames are rounding, not another rate."""


def check_duration(what: str, audio_seconds: float, motion_seconds: float, tolerance: float) -> None:
    """Refuse a sequence whose audio and motion lengths differ by more than ``tolerance`` seconds, or by more than
    :data:`MAX_DURATION_SHARE` of the longer of the two (and :data:`MIN_DURATION_GAP` seconds)."""
    gap = abs(audio_seconds - motion_seconds)
    share = gap / max(audio_seconds, motion_seconds, 1e-9)
    if gap > tolerance:
        raise MMTalkerError(
            what,
            f"audio lasts {audio_seconds:.3f} s but the motion {motion_seconds:.3f} s "
            f"(more than the manifest's duration_tolerance of {tolerance:g} s apart)",
            "check that the files belong together and that stored_fps is right; if the data is known to be "
            "like this, raise duration_tolerance in a copy of the preset or in manifest.json",
        )
    if share > MAX_DURATION_SHARE and gap > MIN_DURATION_GAP:
        raise MMTalkerError(
            what,
            f"audio lasts {audio_seconds:.3f} s but the motion {motion_seconds:.3f} s ({share:.0%} of the longer "
            f"apart; at most {MAX_DURATION_SHARE:.0%} is taken as the same utterance)",
            "check that the files belong together and that stored_fps is right (motion at half or twice the "
            "manifest's rate lasts twice or half its audio)",
        )
