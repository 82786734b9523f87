"""How accurate are the models on long speech? 50 s of the synthetic benchmark's speech in one clip, scored against its truth.

The benchmark's clips are 2–5 s, but users animate minutes of speech: in windows (20 s with 3 s crossfades,
docs/inference.md), and a model that reads where it is in a clip (Whisper's position table) then sees
positions it never trained on. This script asks the benchmark's own generator for ground truth on long
speech. It rebuilds the generator's speakers from the dataset's manifest (``extra.generator``: preset and
seed; their templates are checked against the dataset's) and has each of them say ``--sentences`` test-split
sentences in one breath (the first are the test set's, the rest new; none is a training sentence), about
2.5 s each, with the same motion, random blinks, jitter and noise as the benchmark. Every checkpoint animates
that audio in windows of each ``--windows`` length (the same windowing and crossfade for every model kind,
:mod:`mmtalker.inference.windows`, as ``mmtalker evaluate`` and ``animate`` do), in the speaker's style when it trained on the speaker. Printed:
LVE and EVE over all long clips (frame-weighted, as the protocol), per ``--segment-s`` stretch of the
clips, the same checkpoints on the test split's own short clips of the same speakers, and the oracle's
floor on the long clips. Needs the ``synth`` extra (the speech engines).

    python benchmarks/long_audio_accuracy.py --data data/synth --checkpoint runs/a/best --checkpoint runs/b/best

Measured: docs/results.md (eighth round).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _bench_common import open_split, report_unit  # noqa: E402
from mmtalker.errors import MMTalkerError  # noqa: E402


@dataclass
class LongClip:
    """A speaker's long clip, shaped like a dataset sequence for the prediction sources."""

    subject: str
    samples: np.ndarray  # (N,) 16 kHz float32
    truth: np.ndarray  # (T, V, 3)
    oracle: np.ndarray  # (T, V, 3)
    fps: float

    @property
    def num_frames(self) -> int:
        return len(self.truth)

    def audio(self) -> np.ndarray:
        return self.samples


def make_long_clips(dataset, subjects: list[str] | None, sentences: int) -> tuple[list[LongClip], list[str]]:
    """The generator's speakers (all seen ones by default) each saying ``sentences`` test sentences in one clip."""
    from mmtalker.synth.face import load_default_face
    from mmtalker.synth.generate import Job, make_clip, make_plan, make_subjects
    from mmtalker.synth.sentences import make_sentences

    root = dataset.root
    generator = (dataset.manifest.extra or {}).get("generator")
    if not generator:
        raise MMTalkerError(root, "has no extra.generator in its manifest: not made by `mmtalker data synth`",
                            "this check needs the synthetic benchmark's generator")
    sizes, seed, fps = generator["sizes"], int(generator["seed"]), float(dataset.manifest.fps)
    plan = make_plan(sizes, seed)
    speakers = {s.name: s for s in make_subjects(plan, load_default_face(num_vertices=int(sizes["face_vertices"])), seed)}
    names = subjects or plan.seen
    unknown = [n for n in names if n not in speakers]
    if unknown:
        raise MMTalkerError(root, f"has no speaker {', '.join(unknown)}", f"choose from {', '.join(speakers)}")
    texts = make_sentences("test", sentences, seed)
    clips = []
    for name in names:
        speaker = speakers[name]
        if not np.allclose(speaker.template, dataset.template(name), atol=1e-6):
            raise MMTalkerError(root, f"{name}'s template differs from the one this mmtalker's generator makes",
                                "regenerate the benchmark with this version (mmtalker data synth)")
        job = Job(name, speaker.index, "long", 10_000, " ".join(texts))
        clip = make_clip(job, speaker, sizes, seed, fps)
        clips.append(LongClip(name, clip.audio, clip.truth, clip.oracle, fps))
    return clips, texts


def score(preds, clips, dataset, regions, segment: int, segments: int = 0) -> tuple[dict, list[dict]]:
    """Protocol scores over all clips (with each clip's own under ``"per_clip"``), and over each of their first
    ``segments`` stretches of ``segment`` frames."""
    from mmtalker.eval.metrics import MetricAccumulator

    def acc():
        return MetricAccumulator(lip_idx=regions.lips, eye_idx=regions.eyes, upper_idx=regions.upper)

    whole, parts, per_clip = acc(), [], {}
    for pred, clip in zip(preds, clips):
        template = dataset.template(clip.subject)
        per_clip[clip.subject] = whole.add(pred, clip.truth, template)
        for k in range(segments):
            if k == len(parts):
                parts.append(acc())
            stretch = slice(k * segment, (k + 1) * segment)
            parts[k].add(pred[stretch], clip.truth[stretch], template)
    return whole.result() | {"per_clip": per_clip}, [p.result() for p in parts]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth", help="the synthetic benchmark (its manifest names the generator's preset and seed)")
    ap.add_argument("--checkpoint", action="append", required=True, help="a checkpoint folder of any model kind (repeatable)")
    ap.add_argument("--subjects", nargs="+", help="speakers to use (default: every seen speaker)")
    ap.add_argument("--sentences", type=int, default=20, help="test sentences per long clip (about 2.5 s each)")
    ap.add_argument("--windows", type=float, nargs="+", default=[20.0], help="window lengths to animate with, seconds")
    ap.add_argument("--overlap-s", type=float, default=3.0, help="crossfade between windows, seconds")
    ap.add_argument("--segment-s", type=float, default=10.0, help="length of the stretches scored on their own, seconds")
    ap.add_argument("--json", help="also write every score to this JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from mmtalker.train.checkpoint import read_checkpoint_meta
    from mmtalker.inference.evaluate import checkpoint_predictor

    try:
        if args.sentences < 1:
            raise MMTalkerError("--sentences", f"{args.sentences}: needs at least one sentence")
        for ckpt in args.checkpoint:  # a wrong folder fails now, not after the speech is made
            read_checkpoint_meta(ckpt)
        ds, regions, short = open_split(args.data, "test", ("lips", "eyes"))
        report, unit = report_unit(ds)
        clips, texts = make_long_clips(ds, args.subjects, args.sentences)
        names = {c.subject for c in clips}
        short = [s for s in short if s.subject in names]
        fps = clips[0].fps
        segment = max(1, int(round(args.segment_s * fps)))
        seconds = [c.num_frames / fps for c in clips]
        print(f"{args.data}: {len(clips)} speakers ({', '.join(sorted(names))}), each saying {len(texts)} test sentences "
              f"in one clip of {min(seconds):.1f}–{max(seconds):.1f} s; windows {', '.join(f'{w:g}' for w in args.windows)} s "
              f"with {args.overlap_s:g} s crossfades; LVE / EVE {unit}; short clips: the test split's "
              f"{len(short)} sequences of the same speakers")
        n_seg = min(c.num_frames for c in clips) // segment  # whole stretches only
        floor, floor_parts = score([c.oracle for c in clips], clips, ds, regions, segment, n_seg)
        results = {"floor": {"long": floor, "segments": floor_parts}, "checkpoints": []}
        seg_names = [f"{k * args.segment_s:g}–{(k + 1) * args.segment_s:g} s" for k in range(n_seg)]
        print("| source | window (s) | long clips LVE / EVE | short clips LVE / EVE | " + " | ".join(seg_names) + " |")
        print("| --- | --- | --- | --- | " + " | ".join("---" for _ in seg_names) + " |")

        def pair(r):
            return f"{r['lve'] * report:.3f} / {r['eve'] * report:.4f}"

        print(f"| oracle (floor) | – | {pair(floor)} | – | " + " | ".join(pair(p) for p in floor_parts) + " |", flush=True)
        for ckpt in args.checkpoint:
            _, predict = checkpoint_predictor(ckpt, ds)
            short_acc = score([predict(s)[0] for s in short], [LongClip(s.subject, None, s.vertices(), None, s.fps) for s in short],
                              ds, regions, 1)[0] if short else None
            if short_acc:
                short_acc.pop("per_clip")  # keyed by speaker: the test split has several clips of each
            for window in args.windows:
                _, predict = checkpoint_predictor(ckpt, ds, window_s=window, overlap_s=args.overlap_s)
                preds = [predict(c)[0] for c in clips]
                whole, parts = score(preds, clips, ds, regions, segment, n_seg)
                results["checkpoints"].append({"checkpoint": ckpt, "window_s": window, "long": whole, "segments": parts, "short": short_acc})
                print(f"| {ckpt} | {window:g} | {pair(whole)} | {pair(short_acc) if short_acc else '–'} | "
                      + " | ".join(pair(p) for p in parts) + " |", flush=True)
        if args.json:
            results.update(speakers=sorted(names), sentences=texts, segment_s=args.segment_s, overlap_s=args.overlap_s,
                           units={"lve": "m^2", "eve": "m^2", "mve": "m", "report_scale": report})
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
            print(f"written: {args.json}")
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
