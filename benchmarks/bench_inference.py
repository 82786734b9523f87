"""Inference speed and peak memory for 10 s of speech on the default face (speech encoder included).

    .venv/bin/python benchmarks/bench_inference.py [--checkpoint DIR] [--seconds 10] [--threads 2]

Without --checkpoint a randomly initialised model with the default config is built on the default face
(speed does not depend on training). Each measurement runs in a fresh process that loads the checkpoint
with ``MMTalker.from_pretrained``; peak memory is that process's peak resident set (ru_maxrss).
Reports the first call (includes preparing the face: geometry encoder + per-vertex regressor part), the
median of the following calls, the stages of one call, and the real-time factor (audio s / compute s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import Timer, checkpoint_or_random, machine_note, peak_rss_mb, run_worker, speech  # noqa: E402


def worker(args) -> None:
    import torch

    from mmtalker.audio.io import SAMPLE_RATE, load_audio
    from mmtalker.inference.api import MMTalker

    torch.set_num_threads(args.threads)
    audio = load_audio(args.audio)[: int(args.seconds * SAMPLE_RATE)] if args.audio else speech(args.seconds)
    rss_before = peak_rss_mb()
    talker = MMTalker.from_pretrained(args.checkpoint)
    with Timer() as first:
        out = talker.animate(audio)
    calls = []
    for _ in range(args.repeats):
        with Timer() as t:
            talker.animate(audio)
        calls.append(t)
    engine, face = talker.engine, talker.prepare_face()
    stages = {}
    with Timer() as t:
        feats = engine.features(audio, out.shape[0])
    stages["speech encoder"] = t
    with Timer() as t:
        part = engine.motion(face, feats)
    stages["audio head + fusion"] = t
    with Timer() as t:
        engine.decode(face, part)
    stages["regressor (all vertices)"] = t
    with Timer() as t:
        engine.prepare(face.subject.item(), talker.model.template)
    stages["prepare face (once per mesh)"] = t
    median = sorted(calls, key=lambda c: c.wall)[len(calls) // 2]
    print(json.dumps({
        "seconds": len(audio) / SAMPLE_RATE, "frames": out.shape[0], "vertices": out.shape[1], "fps": talker.fps,
        "first": [first.wall, first.cpu], "median": [median.wall, median.cpu],
        "best_wall": min(c.wall for c in calls), "best_cpu": min(c.cpu for c in calls),
        "stages": {k: [v.wall, v.cpu] for k, v in stages.items()},
        "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint folder (default: a random model on the default face)")
    p.add_argument("--audio", help="speech file (default: the fixture recordings, concatenated)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vertices", type=int, default=5000, help="default face size when no checkpoint is given")
    p.add_argument("--override", nargs="*", help="model-config overrides for the random model, KEY=JSON (e.g. regressor_layers=[])")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    checkpoint, what, _keep = checkpoint_or_random(args.checkpoint, args.vertices, args.override)
    print(f"model: {what}")
    print(machine_note(args.threads))
    extra = ["--seconds", str(args.seconds), "--threads", str(args.threads), "--repeats", str(args.repeats)]
    if args.audio:
        extra += ["--audio", args.audio]
    r = run_worker(__file__, ["--checkpoint", checkpoint, *extra], args.threads)
    s = r["seconds"]
    print(f"audio: {s:.1f} s -> {r['frames']} frames x {r['vertices']} vertices at {r['fps']:g} fps")
    n = args.threads
    print("                                 wall s   CPU s  (real-time factor: wall | CPU/threads)")
    for name, (wall, cpu) in [("first call (prepares the face)", r["first"]), ("later calls, median", r["median"]),
                              ("later calls, best", [r["best_wall"], r["best_cpu"]])]:
        print(f"{name:32s} {wall:7.3f} {cpu:7.3f}  ({s / wall:.1f}x | {s / (cpu / n):.1f}x)")
    for name, (wall, cpu) in r["stages"].items():
        print(f"  {name:30s} {wall:7.3f} {cpu:7.3f}")
    print(f"peak memory (RSS): {r['peak_rss_mb']:.0f} MB (after imports, before loading: {r['rss_before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
