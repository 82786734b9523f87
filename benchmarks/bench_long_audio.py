"""Peak memory (and time) when animating long speech: 1 min and 10 min by default.

    .venv/bin/python benchmarks/bench_long_audio.py [--checkpoint DIR] [--minutes 1 10] [--threads 2]

Long speech is made by concatenating the fixture recordings. Each length runs in a fresh process that
loads the checkpoint and animates window by window (20 s windows, 3 s crossfade), writing the frames
straight to an .npy file as ``mmtalker animate --out x.npy`` does, so memory is bounded by one window
whatever the length. ``--in-memory`` instead returns the whole (T, V, 3) array (memory grows with T).
Without --checkpoint a random model with the default config runs on the default face.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import Timer, checkpoint_or_random, machine_note, peak_rss_mb, run_worker, speech  # noqa: E402


def worker(args) -> None:
    import numpy as np
    import torch

    from mmtalker.audio.io import SAMPLE_RATE
    from mmtalker.inference.api import MMTalker
    from mmtalker.inference.npy_writer import NpyBlockWriter

    torch.set_num_threads(args.threads)
    audio = speech(args.minutes * 60)
    talker = MMTalker.from_pretrained(args.checkpoint)
    T = talker.num_frames_for(len(audio))
    rss_loaded = peak_rss_mb()
    with Timer() as t, tempfile.TemporaryDirectory() as tmp:
        if args.in_memory:
            out = talker.animate(audio)
            shape = out.shape
        else:
            face = talker.prepare_face()
            writer = NpyBlockWriter(Path(tmp) / "anim.npy", (T, face.num_points, 3))
            for _, block in talker.iter_animate(audio, face=face, num_frames=T):
                writer.write(block)
            path = writer.close()
            shape = np.load(path, mmap_mode="r").shape
    print(json.dumps({"seconds": len(audio) / SAMPLE_RATE, "shape": list(shape), "wall": t.wall, "cpu": t.cpu,
                      "rss_loaded_mb": rss_loaded, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint folder (default: a random model on the default face)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vertices", type=int, default=5000, help="default face size when no checkpoint is given")
    p.add_argument("--in-memory", action="store_true", help="return the whole array instead of writing an .npy")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.minutes = args.minutes[0]
        return worker(args)
    checkpoint, what, _keep = checkpoint_or_random(args.checkpoint, args.vertices)
    print(f"model: {what}")
    print(machine_note(args.threads))
    print("output: " + ("the whole array in memory" if args.in_memory else "written to an .npy window by window"))
    for minutes in args.minutes:
        extra = ["--in-memory"] if args.in_memory else []
        r = run_worker(__file__, ["--checkpoint", checkpoint, "--minutes", str(minutes), "--threads", str(args.threads), *extra],
                       args.threads)
        T, V, _ = r["shape"]
        size_mb = T * V * 3 * 4 / 2**20
        print(f"{r['seconds'] / 60:5.1f} min: {T} frames x {V} vertices ({size_mb:.0f} MB of output); "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (model loaded: {r['rss_loaded_mb']:.0f} MB); "
              f"{r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU ({r['seconds'] / (r['cpu'] / args.threads):.1f}x real time by CPU/threads)")


if __name__ == "__main__":
    main()
