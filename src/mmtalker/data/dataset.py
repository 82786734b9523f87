"""Open a dataset folder in any layout users hold, and serve its sequences, templates, topology and regions.

>>> ds = open_dataset("data/vocaset")                  # the release as downloaded (data_verts.npy, ...)
>>> ds = open_dataset("data/BIWI", preset="biwi")      # FaceFormer/CodeTalker processed folders
>>> ds = open_dataset("runs/synth", fps=25)            # our own format (manifest.json), served at 25 fps
>>> for seq in ds.sequences("test"): seq.audio(), seq.vertices()

The layout is detected from the folder: ``manifest.json`` (ours, or a manifest a user wrote for their folder),
``data_verts.npy`` (VOCASET raw, preset ``vocaset`` by default), ``vertices_npy/`` (processed; which dataset it
is cannot be guessed, so it needs ``preset``). Dataset facts come from the manifest or preset, never from code.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mmtalker.data.formats import processed, vocaset_raw
from mmtalker.data.formats.common import check_motion_scales, load_templates, resolve
from mmtalker.data.manifest import Manifest, Split, load_splits, parse_splits
from mmtalker.data.sequence import Sequence
from mmtalker.errors import MMTalkerError

__all__ = ["Dataset", "Sequence", "open_dataset", "load_preset", "preset_names", "detect_layout", "MANIFEST_FILE"]

MANIFEST_FILE = "manifest.json"
PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"

_READERS = {"native": processed.scan, "processed": processed.scan, "vocaset_raw": vocaset_raw.scan}


def preset_names() -> list[str]:
    """Names of the presets shipped in ``mmtalker/presets`` (``biwi``, ``multiface``, ``vocaset``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_preset(preset: str | os.PathLike, layout: str) -> Manifest:
    """A preset by name (see :func:`preset_names`) or JSON file path, as the manifest of a ``layout`` folder."""
    path = Path(preset)
    if path.suffix != ".json":
        path = PRESETS_DIR / f"{str(preset).lower()}.json"
        if not path.is_file():
            raise MMTalkerError(f"preset {preset!r}", "no such preset", f"choose one of {', '.join(preset_names())} "
                                "or give a .json file")
    manifest = Manifest.load(path, layout=layout)
    manifest.layout = layout
    return manifest


def detect_layout(root: Path) -> str:
    """``native`` (manifest.json), ``vocaset_raw`` (data_verts.npy) or ``processed`` (vertices_npy/)."""
    if not root.is_dir():
        if root.exists():
            raise MMTalkerError(root, "is not a folder", "a dataset is a folder")
        raise MMTalkerError(root, "no such folder", f"make the synthetic benchmark there with `mmtalker data synth "
                            f"--out {root}`, or give the path of an existing dataset folder")
    if (root / MANIFEST_FILE).is_file():
        return "native"
    if (root / vocaset_raw.VERTS_FILE).is_file():
        return "vocaset_raw"
    if (root / processed.VERTICES_DIR).is_dir():
        return "processed"
    if (root / "best" / "config.json").is_file():
        raise MMTalkerError(root, "is a training run's folder, not a dataset",
                            f"its checkpoints are {root / 'best'} and {root / 'last'}, the last epoch's")
    raise MMTalkerError(
        root,
        "is not a dataset folder I know",
        f"expected {MANIFEST_FILE}, {vocaset_raw.VERTS_FILE} (VOCASET as released) or "
        f"{processed.VERTICES_DIR}/ + wav/ (FaceFormer/CodeTalker layout)",
    )


def _manifest_for(root: Path, layout: str, preset: str | os.PathLike | None) -> Manifest:
    if layout == "native":
        if preset is not None:
            raise MMTalkerError(root, f"has its own {MANIFEST_FILE}, so a preset does not apply",
                                "drop --preset; use --splits to change its splits")
        return Manifest.load(root / MANIFEST_FILE)
    if preset is None and layout == "vocaset_raw":
        preset = "vocaset"
    if preset is None:
        raise MMTalkerError(root, f"holds the processed layout ({processed.VERTICES_DIR}/, wav/) but which dataset "
                            "it is cannot be guessed", f"pass --preset {'|'.join(preset_names())}")
    return load_preset(preset, layout)


def open_dataset(
    path: str | os.PathLike,
    preset: str | os.PathLike | None = None,
    *,
    fps: float | None = None,
    splits: str | os.PathLike | dict[str, Split] | None = None,
) -> "Dataset":
    """Open a dataset folder.

    Args:
        path: the folder (see the module docstring for the layouts).
        preset: ``"vocaset"``, ``"biwi"``, ``"multiface"`` or a preset JSON file; needed for ``vertices_npy/``
            folders without a manifest, refused for folders with one.
        fps: frames per second to serve motion at (default: the manifest's ``fps``).
        splits: a split JSON file (or a dict name -> :class:`Split`) replacing the manifest's splits.

    Raises:
        MMTalkerError: an unknown layout, a bad manifest, missing or corrupt files, mismatched vertex counts
        or durations, missing templates, or no sequences at all.
    """
    root = Path(path)
    if preset is not None and not root.exists():  # a preset names a dataset the user brings, not one we make
        raise MMTalkerError(root, "no such folder", f"the '{Path(str(preset)).stem}' preset reads your own copy of that "
                            "dataset: put it there, or give its folder (--data DIR); docs/datasets.md says what it holds")
    layout = detect_layout(root)
    manifest = _manifest_for(root, layout, preset)
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise MMTalkerError("fps", f"must be a positive number, got {fps!r}")
        manifest.fps = float(fps)
    if splits is not None:
        manifest.splits = parse_splits(splits, "splits") if isinstance(splits, dict) else load_splits(splits)
    templates = load_templates(root, manifest, str(root))
    known = list(dict.fromkeys(manifest.subjects + list(templates)))
    sequences = _READERS[manifest.layout](root, manifest, known)
    check_motion_scales(sequences, templates)
    return Dataset(root, manifest, sequences, templates)


class Dataset:
    """An opened dataset: its manifest, sequences, templates, topology and regions.

    Attributes:
        root: the folder.
        manifest: its :class:`~mmtalker.data.manifest.Manifest` (``fps`` is the served rate).
        subjects: subjects with at least one sequence (manifest order when it lists them, else sorted).
    """

    def __init__(self, root: Path, manifest: Manifest, sequences: list[Sequence], templates: dict[str, np.ndarray]):
        if not sequences:
            raise MMTalkerError(root, "holds no sequences", "is the folder complete?")
        self.root = root
        self.manifest = manifest
        self._sequences = sequences
        self._by_key = {s.key: s for s in sequences}
        self._templates = templates
        self.subjects = self._subjects(sequences)
        missing = [s for s in self.subjects if s not in templates]
        if missing:
            raise MMTalkerError(root, f"no template for subject(s) {', '.join(missing)}",
                                f"add them to {manifest.templates}")

    def _subjects(self, sequences: list[Sequence]) -> list[str]:
        present = {s.subject for s in sequences}
        listed = self.manifest.subjects
        unknown = sorted(present - set(listed)) if listed else []
        if unknown:
            raise MMTalkerError(self.root, f"sequences of subject(s) not in the manifest: {', '.join(unknown)}",
                                "add them to its \"subjects\" or check the file names")
        return [s for s in listed if s in present] if listed else sorted(present)

    def __len__(self) -> int:
        return len(self._sequences)

    def __repr__(self) -> str:
        m = self.manifest
        return f"Dataset({m.name!r}, {m.layout}, {len(self)} sequences, {len(self.subjects)} subjects, {m.fps:g} fps)"

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest.splits)

    def sequences(self, split: str | None = None) -> list[Sequence]:
        """All sequences (sorted by key), or those of a named split.

        Raises:
            MMTalkerError: unknown split, a split naming subjects or keys the dataset lacks, or an empty split.
        """
        if split is None:
            return list(self._sequences)
        if split not in self.manifest.splits:
            raise MMTalkerError(f"split {split!r}", "no such split in the dataset",
                                f"available: {', '.join(self.split_names) or 'none'}")
        chosen = self._select(split, self.manifest.splits[split])
        if not chosen:
            raise MMTalkerError(f"split {split!r}", f"selects no sequences of {self.root}",
                                "check its subjects and sentence numbers")
        return chosen

    def _select(self, name: str, split: Split) -> list[Sequence]:
        if split.keys is not None:
            unknown = [k for k in split.keys if k not in self._by_key]
            if unknown:
                raise MMTalkerError(f"split {name!r}", f"unknown sequence key(s): {', '.join(unknown[:5])}")
            wanted = set(split.keys)
            return [s for s in self._sequences if s.key in wanted]
        subjects = self.subjects if split.subjects == "*" else split.subjects
        unknown = [s for s in subjects if s not in self.subjects]
        if unknown:
            raise MMTalkerError(f"split {name!r}", f"names subject(s) the dataset does not have: {', '.join(unknown)}",
                                f"the dataset has {', '.join(self.subjects)}; name those in the split (a split file: "
                                "--splits FILE)")
        subject_set = set(subjects)
        sentences = None if split.sentences is None else set(split.sentences)
        return [
            s for s in self._sequences
            if s.subject in subject_set and (sentences is None or s.sentence_number in sentences)
        ]

    def sequence(self, key: str) -> Sequence:
        """The sequence named ``key`` (``"<subject>_<sentence>"``)."""
        if key not in self._by_key:
            raise MMTalkerError(f"sequence {key!r}", f"not in {self.root}")
        return self._by_key[key]

    def template(self, subject: str) -> np.ndarray:
        """``(V, 3)`` float32 neutral face of ``subject`` (a copy)."""
        if subject not in self._templates:
            raise MMTalkerError(f"subject {subject!r}", f"has no template in {self.root}",
                                f"known: {', '.join(sorted(self._templates))}")
        return self._templates[subject].copy()

    def topology(self):
        """The :class:`~mmtalker.mesh.io.Mesh` whose faces all sequences share (first existing manifest file)."""
        from mmtalker.mesh.io import load_mesh

        candidates = [resolve(self.root, p) for p in self.manifest.topology]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            tried = ", ".join(str(p) for p in candidates) or "none named in the manifest"
            raise MMTalkerError(self.root, f"no topology mesh found (tried: {tried})",
                                "put the dataset's template mesh there (e.g. FLAME_sample.ply for VOCASET)")
        mesh = load_mesh(found)
        if mesh.num_vertices != self.manifest.num_vertices:
            raise MMTalkerError(found, f"has {mesh.num_vertices} vertices, the dataset {self.manifest.num_vertices}")
        return mesh

    def region(self, name: str) -> np.ndarray:
        """``(K,)`` int64 sorted unique vertex indices of a named region (``lips``, ``eye_region``, ``upper_face``)."""
        return self._region(name, depth=0).indices

    def region_record(self, name: str):
        """The named region as a :class:`mmtalker.data.regions.Region`: its indices, the duplicate entries dropped
        from its files, and where it came from (a union names its parts)."""
        return self._region(name, depth=0)

    def region_present(self, name: str, depth: int = 0) -> bool:
        """Whether region ``name`` is defined and every file it reads is there (a damaged file counts as there:
        reading it then says what is wrong)."""
        regions = self.manifest.regions
        if name not in regions or depth > len(regions):
            return False
        spec = regions[name]
        if isinstance(spec, dict) and "union" in spec:
            return all(self.region_present(part, depth + 1) for part in spec["union"])
        file = spec if isinstance(spec, str) else spec.get("file")
        return isinstance(file, str) and resolve(self.root, file).is_file()

    def _region(self, name: str, depth: int):
        from mmtalker.data.regions import Region, load_region

        regions = self.manifest.regions
        if name not in regions:
            raise MMTalkerError(f"region {name!r}", f"not defined for dataset {self.manifest.name}",
                                f"defined: {', '.join(regions) or 'none'}")
        if depth > len(regions):
            raise MMTalkerError(f"region {name!r}", "its unions refer to each other in a loop")
        spec = regions[name]
        if isinstance(spec, dict) and "union" in spec:
            parts = [self._region(part, depth + 1) for part in spec["union"]]
            return Region(name, np.unique(np.concatenate([p.indices for p in parts])).astype(np.int64),
                          sum(p.duplicates for p in parts), " ∪ ".join(p.source for p in parts))
        file, key = (spec, None) if isinstance(spec, str) else (spec["file"], spec.get("key"))
        path = resolve(self.root, file)
        if not path.is_file():
            raise MMTalkerError(path, f"region file for {name!r} not found",
                                "copy it there (region files come with the dataset or FLAME, not with mmtalker), or use "
                                "another: evaluate --regions ROLE=FILE; train --set loss.lip_region=NAME, and "
                                "loss.eyes: 0 with model.eye_pathway: false without an eye region")
        return load_region(path, key, num_vertices=self.manifest.num_vertices)
