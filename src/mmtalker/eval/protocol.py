"""The evaluation protocol: which sequences, which regions, which predictions, and how scores add up.

Scores follow :mod:`mmtalker.eval.metrics` (frame-weighted LVE/EVE/MVE, FDD averaged over sequences),
per model, overall and per subject. Region sets come from the dataset's manifest (roles below) or from
files the user passes. Predictions are either computed by a model or read from a folder of ``.npy``
files named as mmtalker, FaceFormer and CodeTalker save them:

- ``<subject>_<sentence>.npy`` (or ``.npz``), or
- ``<subject>_<sentence>_condition_<style>.npy``: one file per speaking style; each counts as its own
  sequence, as the peers' own evaluation scripts count them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.eval.metrics import MAX_FRAME_MISMATCH, MetricAccumulator
from mmtalker.mesh.scale import check_same_scale
from mmtalker.progress import progress

# Metric -> the manifest region names that can serve it, in order of preference.
REGION_ROLES = {
    "lips": ("lips", "lve", "lip"),
    "eyes": ("eye_region", "eyes", "eve"),
    "upper": ("upper_face", "fdd", "upper"),
}


@dataclass
class Regions:
    """Vertex index arrays for the three metrics (any may be None: that metric is then not computed)."""

    lips: np.ndarray | None = None
    eyes: np.ndarray | None = None
    upper: np.ndarray | None = None
    sources: dict = field(default_factory=dict)


def regions_for(dataset, overrides: dict[str, str] | None = None) -> Regions:
    """Regions from ``overrides`` (role -> region file, as ``lips=path``) or else the dataset's manifest."""
    from mmtalker.data.regions import load_region

    out = Regions()
    available = set(dataset.manifest.regions)
    for role, names in REGION_ROLES.items():
        if overrides and role in overrides:
            spec = overrides[role]
            path, key = split_region_spec(spec)
            region = load_region(path, key, num_vertices=dataset.manifest.num_vertices)
            setattr(out, role, region.indices)
            out.sources[role] = f"{spec} ({_counted(region)})"
            continue
        defined = [n for n in names if n in available]
        # the first of the role's names whose files are there; with none there, the lips' first defined (its read
        # then says which file is missing: LVE is the protocol's point), the other roles left unscored with a note
        name = next((n for n in defined if dataset.region_present(n)), None)
        if name is None and defined and role != "lips":
            out.sources[role] = f"not scored: the file of manifest region '{defined[0]}' is missing"
            continue
        name = name or (defined[0] if defined else None)
        if name is not None:
            region = dataset.region_record(name)
            setattr(out, role, region.indices)
            out.sources[role] = f"manifest region '{name}' ({_counted(region)})"
    if out.lips is None:
        raise MMTalkerError(dataset.root, "has no lip region for LVE",
                            f"add one to its manifest (as one of {', '.join(REGION_ROLES['lips'])}) or pass --regions lips=FILE")
    return out


def split_region_spec(spec: str) -> tuple[str, str | None]:
    """``FILE[:KEY]`` -> (file, key or None): a whole spec naming a file is that file (a path may hold ':'), else the
    key follows the last ':'."""
    if Path(spec).is_file():
        return spec, None
    path, sep, key = spec.rpartition(":")
    if not sep or not path or "/" in key or "\\" in key:  # "c:dir/lips.txt": a path, not a file and a key
        return spec, None
    return path, key or None


def _counted(region) -> str:
    """"250 vertices", or with repeated entries in its file "250 vertices; 4 repeated entries dropped"."""
    dropped = f"; {region.duplicates} repeated entr{'y' if region.duplicates == 1 else 'ies'} dropped" if region.duplicates else ""
    return f"{len(region.indices)} vertices{dropped}"


def prediction_files(pred_dir: Path, key: str) -> list[Path]:
    """The prediction files for sequence ``key`` in ``pred_dir`` (one, or one per condition)."""
    conditioned = sorted(pred_dir.glob(f"{key}_condition_*.npy"))
    plain = [p for p in (pred_dir / f"{key}.npy", pred_dir / f"{key}.npz") if p.is_file()]
    if len(plain) + bool(conditioned) > 1:
        names = ", ".join(p.name for p in plain) + (f", {len(conditioned)} {key}_condition_*.npy" if conditioned else "")
        raise MMTalkerError(pred_dir, f"holds more than one prediction of {key} ({names})",
                            "keep one: <key>.npy, <key>.npz, or the <key>_condition_<style>.npy files")
    return plain or conditioned


@dataclass
class Scores:
    """A model's scores: ``overall`` and ``per_subject`` dicts of metric -> value (dataset units²)."""

    name: str
    overall: dict
    per_subject: dict
    missing: list
    per_vertex: np.ndarray | None = None  # (V,) mean over frames of the squared error of each vertex
    per_sequence: dict = field(default_factory=dict)  # sequence key -> its own scores (mean over its predictions) and frames


def score(
    name: str,
    sequences: Iterable,
    predict: Callable[[object], list[np.ndarray]],
    dataset,
    regions: Regions,
) -> Scores:
    """Scores ``predict(seq) -> [prediction (T, V, 3), ...]`` over ``sequences`` of ``dataset``.

    A prediction list may be empty (no prediction for that sequence): it is reported as missing.
    """
    total = MetricAccumulator(regions.lips, regions.eyes, regions.upper)
    by_subject: dict[str, MetricAccumulator] = {}
    missing = []
    per_sequence: dict[str, dict] = {}
    sq_sum, frames = None, 0
    sequences = list(sequences)
    for seq in progress(sequences, desc=f"evaluate {name}", unit="seq"):
        preds = predict(seq)
        if not preds:
            missing.append(seq.key)
            continue
        gt = seq.vertices()
        template = dataset.template(seq.subject)
        acc = by_subject.setdefault(seq.subject, MetricAccumulator(regions.lips, regions.eyes, regions.upper))
        own = []
        for pred in preds:
            if pred.shape[1:] != gt.shape[1:] or abs(len(pred) - len(gt)) > MAX_FRAME_MISMATCH:
                raise MMTalkerError(f"{name}: prediction for {seq.key}", f"has shape {pred.shape}, the truth {gt.shape}")
            check_same_scale(f"{name}: prediction for {seq.key}", pred[0], gt[0], "the truth's face",
                             "save predictions in the dataset's units (mm and m differ 1000×)")
            own.append(total.add(pred, gt, template))
            acc.add(pred, gt, template)
            t = min(len(pred), len(gt))
            err = np.sum((pred[:t].astype(np.float64) - gt[:t]) ** 2, axis=-1).sum(axis=0)  # (V,)
            sq_sum = err if sq_sum is None else sq_sum + err
            frames += t
        per_sequence[seq.key] = {k: float(np.mean([o[k] for o in own])) for k in own[0]}
    if not by_subject:
        raise MMTalkerError(name, "no sequence of the split has a prediction", "check the file names: "
                            "<subject>_<sentence>.npy or <subject>_<sentence>_condition_<style>.npy")
    return Scores(name, total.result(), {s: a.result() for s, a in sorted(by_subject.items())}, missing,
                  per_vertex=sq_sum / frames, per_sequence=per_sequence)


def folder_predictor(pred_dir: Path, num_vertices: int, notes: list[str] | None = None) -> Callable:
    """``predict(seq)`` reading the files of :func:`prediction_files` from ``pred_dir``.

    An ``.npz`` prediction that stores another ``fps`` than the dataset's is resampled to the dataset's rate. A
    prediction as long as the sequence's *audio* where the audio runs longer than the motion (FaceFormer and
    CodeTalker size their outputs by the audio) is cut to the motion, as CodeTalker's own scoring cuts it. Each of
    these is said once in ``notes`` (when given)."""
    from mmtalker.data.animation import load_animation
    from mmtalker.data.fps import resample_frames

    if not pred_dir.is_dir():
        raise MMTalkerError(pred_dir, "prediction folder not found")
    said: set[str] = set()

    def note(kind: str, text: str) -> None:
        if notes is not None and kind not in said:
            said.add(kind)
            notes.append(text)

    def predict(seq):
        preds = []
        for path in prediction_files(pred_dir, seq.key):
            verts, fps = load_animation(path, num_vertices=num_vertices, against="the dataset")
            check_same_scale(path, verts[0], seq.first_frame(), f"the truth's face ({seq.what})",
                             "save predictions in the dataset's units (mm and m differ 1000×)")
            if fps is not None and abs(fps - seq.fps) > 1e-6:
                verts = resample_frames(verts, fps, seq.fps)
                note("fps", f"{pred_dir}: predictions stored at {fps:g} fps (e.g. {path.name}) were resampled to the "
                            f"dataset's {seq.fps:g} fps")
            if fits_audio(len(verts), seq):
                note("audio", f"{pred_dir}: predictions as long as their audio, which runs past the motion (e.g. "
                              f"{path.name}: {len(verts)} frames, the motion {seq.num_frames}), were cut to the motion")
                verts = verts[: seq.num_frames]
            check_frames(path, len(verts), seq)
            preds.append(verts)
        return preds

    return predict


def fits_audio(frames: int, seq) -> bool:
    """Whether a prediction of ``frames`` frames, longer than ``seq``'s motion beyond fps rounding, is as long as its
    audio (within the same rounding): predicted from the whole audio of a sequence whose audio outlasts its motion."""
    if frames - seq.num_frames <= MAX_FRAME_MISMATCH:
        return False
    from mmtalker.audio.io import SAMPLE_RATE

    audio_frames = round(len(seq.audio()) / SAMPLE_RATE * seq.fps)
    return abs(frames - audio_frames) <= MAX_FRAME_MISMATCH


def check_frames(what, frames: int, seq) -> None:
    """Refuse a prediction of ``frames`` frames for ``seq`` when the two differ by more than the metrics cut off
    (:data:`~mmtalker.eval.metrics.MAX_FRAME_MISMATCH` frames, what fps rounding gives)."""
    if abs(frames - seq.num_frames) > MAX_FRAME_MISMATCH:
        raise MMTalkerError(what, f"has {frames} frames, but the sequence {seq.key} has {seq.num_frames} "
                            f"at {seq.fps:g} fps ({seq.duration:.2f} s of motion)",
                            "predict each sequence from its own audio at the dataset's frame rate")
