"""The synthetic benchmark: subjects speaking sentences, with the motion the speech implies and its error floor.

For each subject (a voice, an identity-perturbed face, an articulation :class:`SubjectStyle`) and each of its
sentences: synthesise the speech with phone timings, pad it with silence, turn the phones into rig curves
(coarticulated mouth, blinks, brows), deform the face, add sensor noise. Beside each sequence the *oracle*
motion is written: the expected motion given the audio (same curves without the random blinks, without the
timing and amplitude jitter, without noise). Scoring the oracle against the truth gives the lowest LVE, EVE
and FDD a model can be expected to reach; the manifest records it per split under ``extra["oracle_floor"]``.

Splits follow VOCASET: seen subjects speak train, val and test sentences; unseen subjects speak only the
test sentences (``test_unseen_subjects``). Sizes come from ``dataset_presets.json``. Every random draw is
seeded by ``(seed, subject, sentence)``, so the same seed gives the same bytes whatever the worker count.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE, resample_audio
from mmtalker.errors import MMTalkerError
from mmtalker.eval.metrics import MetricAccumulator, combine_sequences
from mmtalker.progress import progress
from mmtalker.synth import articulation, eyes

PRESETS_FILE = Path(__file__).with_name("dataset_presets.json")
SPLITS = ("train", "val", "test", "test_unseen_subjects")
SCORED_SPLITS = ("val", "test", "test_unseen_subjects")
"""Splits whose oracle floor is measured (the train split is large and no model is scored on it)."""
REPORT_SCALE = 1e5
"""LVE/EVE/FDD in m² are reported ×1e5, as papers do for VOCASET."""


# ----------------------------------------------------------------------------- plan

def load_preset(name: str) -> dict:
    """The size table of preset ``name`` (``tiny``, ``default``, ``large``, ``wide-test``) from ``dataset_presets.json``."""
    presets = {k: v for k, v in json.loads(PRESETS_FILE.read_text(encoding="utf-8")).items() if not k.startswith("_")}
    if name not in presets:
        raise MMTalkerError(f"--preset {name}", "no such dataset preset", f"choose one of: {', '.join(presets)}")
    return presets[name]


@dataclass(frozen=True)
class Job:
    """One sequence to make: ``subject`` speaking sentence ``sentence`` (``text``)."""

    subject: str
    subject_index: int
    sentence: str
    sentence_index: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.subject}_{self.sentence}"


@dataclass(frozen=True)
class Plan:
    """Who says what: subject names, sentence ids per split, the jobs, and the split membership."""

    seen: list[str]
    unseen: list[str]
    sentences: dict[str, list[tuple[str, int, str]]]  # split -> [(id, number, text)]
    jobs: list[Job]
    splits: dict[str, dict[str, list]]  # split -> {"subjects": [...], "sentences": [numbers]}


def make_plan(preset: dict, seed: int) -> Plan:
    """Subjects ``subject01..`` (seen first), sentences numbered 1.. across train, val, test."""
    from mmtalker.synth.sentences import make_sentences

    n_seen, n_unseen = int(preset["seen_subjects"]), int(preset["unseen_subjects"])
    names = [f"subject{i + 1:02d}" for i in range(n_seen + n_unseen)]
    seen, unseen = names[:n_seen], names[n_seen:]
    sentences, number = {}, 1
    for split in ("train", "val", "test"):
        texts = make_sentences(split, int(preset["sentences"][split]), seed)
        sentences[split] = [(f"sentence{number + i:02d}", number + i, t) for i, t in enumerate(texts)]
        number += len(texts)
    jobs = []
    for si, name in enumerate(names):
        for split in ("train", "val", "test") if name in seen else ("test",):
            jobs += [Job(name, si, sid, num, text) for sid, num, text in sentences[split]]
    nums = {s: [n for _, n, _ in sentences[s]] for s in sentences}
    splits = {split: {"subjects": seen, "sentences": nums[split]} for split in ("train", "val", "test")}
    splits["test_unseen_subjects"] = {"subjects": unseen, "sentences": nums["test"]}
    return Plan(seen, unseen, sentences, jobs, splits)


def split_of(job: Job, plan: Plan) -> str:
    """The split a job's sequence belongs to."""
    for split, spec in plan.splits.items():
        if job.subject in spec["subjects"] and job.sentence_index in spec["sentences"]:
            return split
    raise ValueError(f"{job.key} is in no split")


# ----------------------------------------------------------------------------- subjects

@dataclass
class Subject:
    """A synthetic speaker: voice, face (its neutral vertices and rig) and articulation style."""

    name: str
    index: int
    voice: Any
    style: articulation.SubjectStyle
    template: np.ndarray  # (V, 3) float32, metres
    rig: Any


def make_subjects(plan: Plan, face, seed: int) -> list[Subject]:
    """One voice, identity and style per subject, all drawn from ``seed``."""
    from mmtalker.synth.identity import identity_offsets
    from mmtalker.synth.rig import FaceRig
    from mmtalker.synth.voices import make_voices

    names = plan.seen + plan.unseen
    voices = make_voices(len(names), seed)
    subjects = []
    for i, name in enumerate(names):
        id_seed = int(np.random.SeedSequence([int(seed), i, 0x1D]).generate_state(1)[0])
        verts = (face.mesh.vertices + identity_offsets(face, id_seed)).astype(np.float32)
        rig = FaceRig(verts, face.mesh.faces, face.landmarks)
        subjects.append(Subject(name, i, voices[i], articulation.draw_style(seed, i), verts, rig))
    return subjects


# ----------------------------------------------------------------------------- one sequence

def motion_curves(phones, num_frames: int, fps: float, style, rng: np.random.Generator | None = None):
    """All rig channels of one clip: the oracle with ``rng=None``, else the truth. Returns (curves, blink starts)."""
    jitter = None if rng is None else articulation.draw_jitter(rng, len(phones), num_frames, fps)
    curves = articulation.articulation_curves(phones, num_frames, fps, style, jitter)
    eye, blinks = eyes.eye_curves(phones, num_frames, fps, style, rng)
    curves.update(eye)
    return curves, blinks


@dataclass
class Clip:
    """One generated sequence: 16 kHz audio, its phones (seconds), truth and oracle motion (T, V, 3) float32."""

    job: Job
    audio: np.ndarray
    phones: list
    truth: np.ndarray
    oracle: np.ndarray
    blinks: list[float]
    scores: dict[str, dict] | None = None


def make_clip(job: Job, subject: Subject, preset: dict, seed: int, fps: float) -> Clip:
    """Synthesise, pad, animate and add noise to one sequence; deterministic in ``(seed, job)``."""
    from mmtalker.synth.speech import synthesize

    rng = np.random.default_rng([int(seed), job.subject_index, job.sentence_index, 0xC11])
    utt = synthesize(job.text, subject.voice)
    before, after = rng.uniform(*preset["pad_range"], size=2)
    utt = utt.pad(float(before), float(after))
    audio = resample_audio(utt.audio, utt.sample_rate, SAMPLE_RATE).astype(np.float32)
    num_frames = articulation.num_frames_for(len(audio) / SAMPLE_RATE, fps)
    oracle_curves, _ = motion_curves(utt.phones, num_frames, fps, subject.style)
    truth_curves, blinks = motion_curves(utt.phones, num_frames, fps, subject.style, rng)
    oracle = subject.rig.deform(oracle_curves).astype(np.float32)
    truth = subject.rig.deform(truth_curves).astype(np.float32)
    truth += np.float32(preset["noise_sd"]) * rng.standard_normal(truth.shape, dtype=np.float32)
    return Clip(job, audio, list(utt.phones), truth, oracle, blinks)


# The job's shared state: set in this process while clips are made here, and in each worker by _init_worker.
_STATE: dict[str, Any] = {}


def _init_worker(state: dict) -> None:
    _STATE.update(state)


def _work(index: int) -> Clip:
    s = _STATE
    job = s["plan"].jobs[index]
    subject = s["subjects"][job.subject_index]
    clip = make_clip(job, subject, s["preset"], s["seed"], s["fps"])
    if split_of(job, s["plan"]) in SCORED_SPLITS:
        clip.scores = score_clip(clip, subject.template, s["regions"])
    return clip


def iter_clips(plan: Plan, subjects, preset: dict, seed: int, fps: float, workers: int, regions: dict):
    """Yields the clips in plan order, made and scored by ``workers`` processes (1: in this one)."""
    state = dict(plan=plan, subjects=subjects, preset=preset, seed=seed, fps=fps, regions=regions)
    indices = range(len(plan.jobs))
    workers = min(workers, len(plan.jobs), 4 * (os.cpu_count() or 1))  # no more processes than clips or than the cores bear
    if workers <= 1:
        _STATE.update(state)
        try:
            yield from map(_work, indices)
        finally:
            _STATE.clear()
        return
    # spawn, not fork: a process that has run torch or onnxruntime threads can deadlock its forked children
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
        yield from pool.imap(_work, indices, chunksize=1)


# ----------------------------------------------------------------------------- the floor

FLOOR_KINDS = ("oracle", "static")
"""``oracle``: the oracle against the truth; ``static``: the neutral template held still against the truth."""


def score_clip(clip: "Clip", template: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per-sequence metrics (``MetricAccumulator.add``) of each of :data:`FLOOR_KINDS` against the truth."""
    out = {}
    for kind in FLOOR_KINDS:
        pred = clip.oracle if kind == "oracle" else np.broadcast_to(template, clip.truth.shape)
        acc = MetricAccumulator(lip_idx=regions["lips"], eye_idx=regions["eye_region"], upper_idx=regions["upper_face"])
        out[kind] = acc.add(pred, clip.truth, template)
    return out


class FloorMeter:
    """Combines per-sequence scores per split as the protocol does (:func:`~mmtalker.eval.metrics.combine_sequences`,
    which :class:`~mmtalker.eval.metrics.MetricAccumulator` uses too)."""

    UNITS = {"lve": "m^2", "eve": "m^2", "fdd": "m^2", "fdd_abs": "m^2", "mve": "m", "report_scale": REPORT_SCALE}

    def __init__(self):
        self._scores: dict[tuple[str, str], list[dict]] = {}

    def add(self, split: str, scores: dict[str, dict]) -> None:
        for kind, s in scores.items():
            self._scores.setdefault((split, kind), []).append(s)

    def result(self, kind: str) -> dict:
        """split -> {lve, eve, mve, fdd, fdd_abs, frames, sequences, units}."""
        out = {}
        for (split, k), seqs in sorted(self._scores.items()):
            if k != kind:
                continue
            out[split] = combine_sequences(seqs) | {"units": dict(self.UNITS)}
        return out


# ----------------------------------------------------------------------------- the whole dataset

LANDMARKS_REGION = "landmarks_ibug68"
"""The template's 68 landmarks, written as ``regions/landmarks_ibug68.txt`` *in iBUG order* (not sorted)."""
FLOOR_DOC = ("metrics of the oracle (the expected motion given the audio: no random blinks, no jitter, no noise) "
             "against the truth; the lowest error a model can be expected to reach")
STATIC_DOC = "metrics of the subject's neutral template held still against the truth (a model that never moves)"


def _write_face(writer, face, subjects: list[Subject]) -> dict[str, np.ndarray]:
    """Topology, templates, regions and landmarks; returns the regions used for the floor."""
    writer.set_topology(face.mesh)
    for s in subjects:
        writer.set_template(s.name, s.template)
    for name in ("lips", "eye_region", "upper_face", "forehead"):
        writer.set_region(name, np.asarray(face.regions[name], dtype=np.int64))
    writer.set_region(LANDMARKS_REGION, np.asarray(face.landmarks, dtype=np.int64))
    return {k: np.unique(np.asarray(face.regions[k], dtype=np.int64)) for k in ("lips", "eye_region", "upper_face")}


def _extra(preset_name: str, preset: dict, seed: int, subjects: list[Subject], plan: Plan, face) -> dict:
    return {
        "generator": {"preset": preset_name, "seed": int(seed), "sizes": preset},
        "landmarks": {"file": f"regions/{LANDMARKS_REGION}.txt", "order": "iBUG 68, 0-based vertex indices"},
        "face_source": str(face.source),
        "sentences": {split: {sid: text for sid, _, text in items} for split, items in plan.sentences.items()},
        "subjects": {s.name: {"voice": s.voice.to_dict(), "style": s.style.to_dict(),
                              "seen": s.name in plan.seen} for s in subjects},
        "noise_sd": {"value": float(preset["noise_sd"]), "units": "m per coordinate"},
        "oracle": "expected motion given the audio: coarticulated mouth, brows on primary stress, pause blinks "
                  "weighted by their probability and averaged over their timing; no random blinks, no "
                  "timing/amplitude jitter, no sensor noise",
        "sequences": len(plan.jobs),
        "blinks_doc": "start times (s) of the truth's blinks per sequence; each lasts its subject's blink_duration",
    }


def generate(out, *, preset: str = "default", seed: int = 0, fps: float = 30.0, overwrite: bool = False,
             workers: int = 2):
    """Write the synthetic benchmark to ``out``; returns its :class:`~mmtalker.data.manifest.Manifest`.

    Args:
        out: a new or empty folder (a previous dataset of ours with ``overwrite``).
        preset: a size from ``dataset_presets.json`` (``tiny``, ``default``, ``large``, ``wide-test``).
        seed: every random draw derives from it; the same seed gives the same bytes.
        fps: frames per second of the motion; audio is 16 kHz.
        workers: processes synthesising sequences in parallel.
    """
    from mmtalker.data.writer import DatasetWriter
    from mmtalker.synth.face import load_default_face

    sizes = load_preset(preset)
    if not fps > 0:
        raise MMTalkerError(f"fps {fps}", "must be positive")
    plan = make_plan(sizes, seed)  # everything that can fail on this machine fails before the folder exists
    face = load_default_face(num_vertices=int(sizes["face_vertices"]))
    subjects = make_subjects(plan, face, seed)
    writer = DatasetWriter(out, overwrite=overwrite)
    regions = _write_face(writer, face, subjects)
    meter = FloorMeter()
    blinks = {}
    bar = progress(total=len(plan.jobs), desc="synthesising sequences", unit="seq")
    for clip in iter_clips(plan, subjects, sizes, seed, fps, workers, regions):
        job = clip.job
        key = writer.add_sequence(job.subject, job.sentence, clip.audio, clip.truth, alignment=clip.phones,
                                  oracle=clip.oracle)
        blinks[key] = [round(b, 6) for b in clip.blinks]
        if clip.scores is not None:
            meter.add(split_of(job, plan), clip.scores)
        bar.update(1)
    bar.close()
    extra = _extra(preset, sizes, seed, subjects, plan, face)
    extra["blinks"] = blinks
    extra["oracle_floor"] = meter.result("oracle")
    extra["static_baseline"] = meter.result("static")
    extra["metrics_doc"] = {"oracle_floor": FLOOR_DOC, "static_baseline": STATIC_DOC}
    return writer.finish(name=f"synth-{preset}", fps=float(fps), splits=plan.splits,
                         units={"length": "m", "report_scale": REPORT_SCALE}, extra=extra,
                         duration_tolerance=1.0 / float(fps),
                         source="mmtalker data synth: synthetic English speech (espeak-ng, Piper) driving a rigged face")
