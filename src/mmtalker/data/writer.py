"""Write a dataset in our own folder format (``native``), which :func:`mmtalker.data.dataset.open_dataset` reads.

::

    w = DatasetWriter("out/synth")
    w.set_topology(mesh); w.set_region("lips", lip_idx)
    w.set_template("s01", template)                                  # (V, 3)
    w.add_sequence("s01", "train001", audio16k, verts, alignment=phones, oracle=oracle_verts)
    w.finish(name="synth", fps=30, splits={"train": {"subjects": "*", "sentences": ["1-100"]}})

The layout is the processed one (``vertices_npy/``, ``wav/``) plus ``templates.npz``, ``topology.obj``,
``regions/<name>.txt``, ``alignments/<key>.json``, ``oracle_npy/<key>.npy`` and ``manifest.json``, which is
written last: a folder without it is an unfinished write. An existing non-empty folder is refused unless
``overwrite=True``, and even then only when it holds nothing but a previous dataset of ours.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE, save_wav
from mmtalker.data.formats.common import check_duration, split_key
from mmtalker.data.formats.processed import ALIGNMENTS_DIR, ORACLE_DIR, VERTICES_DIR, WAV_DIR
from mmtalker.data.manifest import Manifest, Split, parse_splits
from mmtalker.errors import MMTalkerError

MANIFEST_FILE = "manifest.json"
TEMPLATES_FILE = "templates.npz"
TOPOLOGY_FILE = "topology.obj"
REGIONS_DIR = "regions"
_OUR_DIRS = {VERTICES_DIR: ".npy", WAV_DIR: ".wav", ALIGNMENTS_DIR: ".json", ORACLE_DIR: ".npy", REGIONS_DIR: ".txt"}
MARKER_FILE = ".mmtalker-dataset"
"""Written first into every folder the writer fills: with the manifest (written last), what proves a folder ours."""
_OUR_FILES = {MANIFEST_FILE, TEMPLATES_FILE, TOPOLOGY_FILE, MARKER_FILE}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class DatasetWriter:
    """Builds a native dataset folder one sequence at a time (arrays are written as they come)."""

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False):
        self.root = Path(root)
        _prepare_folder(self.root, overwrite)
        self._num_vertices: int | None = None
        self._sequences: dict[str, tuple[str, str, float, int]] = {}  # key -> subject, sentence, seconds, frames
        self._templates: dict[str, np.ndarray] = {}
        self._regions: dict[str, str] = {}
        self._topology: str | None = None
        self._finished = False

    # ------------------------------------------------------------------------------------------ content

    def add_sequence(
        self,
        subject: str,
        sentence: str,
        audio16k: np.ndarray,
        vertices: np.ndarray,
        alignment: Any | None = None,
        oracle: np.ndarray | None = None,
    ) -> str:
        """Write one sequence and return its key ``"<subject>_<sentence>"``.

        Args:
            subject, sentence: names of letters, digits, ``_ . -``; the sentence id should end in its number
                (``"train007"``) for sentence-number splits to select it.
            audio16k: ``(N,)`` float waveform at 16 kHz in [-1, 1].
            vertices: ``(T, V, 3)`` positions at the dataset's ``stored_fps``; ``V`` is the same for all.
            alignment: JSON-serialisable phone timings (dataclasses are converted), or None.
            oracle: ``(T', V, 3)`` oracle motion at ``stored_fps``, or None.
        """
        self._check_open()
        key = f"{_name(subject, 'subject')}_{_name(sentence, 'sentence')}"
        if key in self._sequences:
            raise MMTalkerError(f"sequence {key!r}", "was already added")
        verts = self._motion(vertices, f"vertices of {key}")
        audio = np.asarray(audio16k, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise MMTalkerError(f"audio of {key}", f"expected a non-empty (N,) waveform, got shape {audio.shape}")
        save_wav(self.root / WAV_DIR / f"{key}.wav", audio, SAMPLE_RATE)
        np.save(self.root / VERTICES_DIR / f"{key}.npy", verts)
        if alignment is not None:
            text = json.dumps(_jsonable(alignment), indent=1)
            (self.root / ALIGNMENTS_DIR).mkdir(exist_ok=True)
            (self.root / ALIGNMENTS_DIR / f"{key}.json").write_text(text + "\n", encoding="utf-8")
        if oracle is not None:
            (self.root / ORACLE_DIR).mkdir(exist_ok=True)
            np.save(self.root / ORACLE_DIR / f"{key}.npy", self._motion(oracle, f"oracle of {key}"))
        self._sequences[key] = (subject, sentence, audio.size / SAMPLE_RATE, verts.shape[0])
        return key

    def set_template(self, subject: str, vertices: np.ndarray) -> None:
        """The neutral face of ``subject``: ``(V, 3)`` positions."""
        self._check_open()
        verts = np.asarray(vertices, dtype=np.float32)
        if verts.ndim != 2:
            raise MMTalkerError(f"template of {subject!r}", f"expected shape (V, 3), got {verts.shape}")
        self._templates[_name(subject, "subject")] = self._motion(verts[None], f"template of {subject!r}")[0]

    def set_topology(self, mesh) -> None:
        """The mesh whose faces all frames share (a :class:`~mmtalker.mesh.io.Mesh`), saved as OBJ."""
        from mmtalker.mesh.io import save_mesh

        self._check_open()
        self._vertex_count(mesh.num_vertices, "topology mesh")
        save_mesh(self.root / TOPOLOGY_FILE, mesh, overwrite=True)
        self._topology = TOPOLOGY_FILE

    def set_region(self, name: str, indices: np.ndarray) -> None:
        """A named vertex set (``lips``, ``eye_region``, ``upper_face``...): ``(K,)`` indices, saved as text, one
        index per line in the order given (so ordered sets such as landmarks keep their order)."""
        self._check_open()
        name = _name(name, "region name")
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise MMTalkerError(f"region {name!r}", f"expected a non-empty (K,) integer array, got {idx.dtype} {idx.shape}")
        if idx.min() < 0 or (self._num_vertices is not None and idx.max() >= self._num_vertices):
            raise MMTalkerError(f"region {name!r}", f"index out of range [0, {self._num_vertices})")
        (self.root / REGIONS_DIR).mkdir(exist_ok=True)
        path = self.root / REGIONS_DIR / f"{name}.txt"
        path.write_text("".join(f"{int(i)}\n" for i in idx), encoding="utf-8")  # one per line, in the given order
        self._regions[name] = f"{REGIONS_DIR}/{name}.txt"

    # ------------------------------------------------------------------------------------------- finish

    def finish(
        self,
        *,
        name: str,
        fps: float,
        stored_fps: float | None = None,
        splits: dict[str, Split | dict] | None = None,
        units: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        duration_tolerance: float = 0.1,
        source: str | None = None,
    ) -> Manifest:
        """Check the whole dataset, write ``templates.npz`` and, last, ``manifest.json``; return the manifest.

        Args:
            name: dataset name.
            fps: frames per second to serve; ``stored_fps`` (default ``fps``) is the rate the motion was written at.
            splits: name -> :class:`Split` or its JSON form (``{"subjects": "*", "sentences": ["1-10"]}``).
            units: ``{"length": "m", "report_scale": 1e5}`` (default metres, scale 1).
            extra: free-form facts (e.g. ``{"oracle_lve": ...}``).
            duration_tolerance: seconds audio and motion may differ by.
            source: where the data comes from (free text).
        """
        self._check_open()
        if not self._sequences:
            raise MMTalkerError(self.root, "no sequences were added", "call add_sequence before finish")
        data = {
            "name": name, "layout": "native", "fps": fps, "stored_fps": fps if stored_fps is None else stored_fps,
            "num_vertices": self._num_vertices, "topology": [self._topology] if self._topology else [],
            "templates": TEMPLATES_FILE, "regions": self._regions, "subjects": self._subjects(),
            "units": units or {"length": "m", "report_scale": 1.0}, "extra": extra or {},
            "duration_tolerance": duration_tolerance, "source": source,
        }
        manifest = Manifest.from_dict(data, self.root / MANIFEST_FILE)
        manifest.splits = parse_splits(splits or {}, self.root / MANIFEST_FILE)
        self._check_sequences(manifest)
        np.savez(self.root / TEMPLATES_FILE, **self._templates)
        manifest.save(self.root / MANIFEST_FILE)
        self._finished = True
        return manifest

    # ------------------------------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._finished:
            raise MMTalkerError(self.root, "this writer has already finished the dataset")

    def _vertex_count(self, count: int, what: str) -> None:
        if self._num_vertices is None:
            self._num_vertices = int(count)
        elif count != self._num_vertices:
            raise MMTalkerError(what, f"has {count} vertices, the dataset {self._num_vertices}")

    def _motion(self, vertices: np.ndarray, what: str) -> np.ndarray:
        verts = np.asarray(vertices)
        if verts.ndim != 3 or verts.shape[2] != 3 or verts.shape[0] == 0 or not np.issubdtype(verts.dtype, np.number):
            raise MMTalkerError(what, f"expected a numeric (T, V, 3) array with T >= 1, got {verts.dtype} {verts.shape}")
        verts = np.ascontiguousarray(verts, dtype=np.float32)
        if not np.isfinite(verts).all():
            raise MMTalkerError(what, "has NaN or infinite coordinates")
        self._vertex_count(verts.shape[1], what)
        return verts

    def _subjects(self) -> list[str]:
        subjects = sorted({s for s, _, _, _ in self._sequences.values()})
        missing = [s for s in subjects if s not in self._templates]
        if missing:
            raise MMTalkerError(self.root, f"no template for subject(s) {', '.join(missing)}", "call set_template")
        return sorted(set(subjects) | set(self._templates))

    def _check_sequences(self, manifest: Manifest) -> None:
        for key, (subject, sentence, seconds, frames) in self._sequences.items():
            if split_key(key, manifest.subjects, key) != (subject, sentence):
                raise MMTalkerError(f"sequence {key!r}", f"its name cannot be split back into subject {subject!r} "
                                    f"and sentence {sentence!r}", "avoid subject names that prefix others")
            check_duration(f"sequence {key!r}", seconds, frames / manifest.stored_fps, manifest.duration_tolerance)


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise MMTalkerError(what, f"{value!r} must be letters, digits, '_', '.' or '-' (no spaces or slashes)")
    return value


def _jsonable(value: Any) -> Any:
    """Dataclasses (e.g. speech.Phone) become dicts, numpy scalars and arrays plain numbers and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _prepare_folder(root: Path, overwrite: bool) -> None:
    """Create ``root``; an existing non-empty folder is cleared only with ``overwrite`` and only if it holds
    nothing but a dataset of ours (so a wrong path never deletes someone's files)."""
    if root.exists() and not root.is_dir():
        raise MMTalkerError(root, "exists and is not a folder")
    entries = list(root.iterdir()) if root.is_dir() else []
    if entries and not overwrite:
        raise MMTalkerError(root, "exists and is not empty", "choose a new folder, or pass --overwrite to replace the "
                            "benchmark there (overwrite=True in Python)")
    if entries:
        foreign = [p for p in entries if not _is_ours(p)]
        if foreign:
            raise MMTalkerError(root, f"holds files that are not part of an mmtalker dataset ({foreign[0].name}, ...)",
                                "refusing to clear it even with overwrite; choose a new folder")
        if not (is_ours_started(root) or (root / MANIFEST_FILE).is_file()):  # wav/, regions/ of the user's own
            raise MMTalkerError(root, "holds files laid out like a dataset but made by someone else (no manifest.json "
                                f"or {MARKER_FILE} of mmtalker's)", "refusing to clear it even with overwrite; choose a new folder")
        (root / MANIFEST_FILE).unlink(missing_ok=True)  # first, so a half-cleared folder never reads as complete
        for path in entries:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for sub in (VERTICES_DIR, WAV_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / MARKER_FILE).write_text("a dataset written by mmtalker; its manifest.json is written last\n")


def is_ours_started(root: Path) -> bool:
    """Whether ``root`` holds a dataset the writer began (finished or not): what ``--overwrite`` may clear."""
    return (Path(root) / MARKER_FILE).is_file()


def _is_ours(path: Path) -> bool:
    if path.name in _OUR_FILES and path.is_file():
        return True
    suffix = _OUR_DIRS.get(path.name)
    if suffix is None or not path.is_dir() or path.is_symlink():
        return False
    return all(p.is_file() and p.suffix == suffix for p in path.iterdir())
