"""Time to build one training window's displacements from a clip that is not preloaded.

    python benchmarks/bench_window_read.py [--vertices 23370] [--frames 125] [--window 48] [--repeats 50]

A dataset too large for ``data.preload_max_gb`` (BIWI's 23370-vertex clips: 280 KB a frame) leaves its clips
memory-mapped, and every training window reads its displacements from the file. This writes one clip of
``--frames`` frames (5 s at 25 fps by default) to a temporary ``.npy`` and prints the median time of
``mmtalker.train.data._window_frames`` for a clean window and for a speed-changed variant (×1.1, read between
frames). The file is read once first, so the times are of a warm page cache (what training sees after its first
epoch).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vertices", type=int, default=23370, help="vertices of the face (default: BIWI's 23370)")
    p.add_argument("--frames", type=int, default=125, help="frames of the clip (default 125: 5 s at 25 fps)")
    p.add_argument("--window", type=int, default=48, help="frames of a training window (default 48)")
    p.add_argument("--repeats", type=int, default=50, help="windows timed per variant (default 50)")
    args = p.parse_args()
    if min(args.vertices, args.frames, args.window, args.repeats) < 1 or args.window > args.frames:
        p.error("every number must be at least 1, and --window at most --frames")

    from mmtalker.data.formats.processed import NpyWavSource
    from mmtalker.data.sequence import Sequence
    from mmtalker.train.data import Clip, Variant, _window_frames

    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "clip.npy"
        np.save(npy, np.random.default_rng(0).normal(size=(args.frames, args.vertices, 3)).astype(np.float32))
        seq = Sequence("s_e01", "s", "e01", 25.0, 25.0, args.frames, NpyWavSource(npy, Path(tmp) / "none.wav", args.vertices))
        variants = [Variant(features=np.zeros((round(args.frames * s), 8), np.float32), stretch=s) for s in (1.0, 1.1)]
        clip = Clip(key="s_e01", subject="s", subject_index=0, template=np.zeros((args.vertices, 3), np.float32),
                    sequence=seq, variants=variants)
        start = (args.frames - args.window) // 2
        print(f"one {args.window}-frame window of a {args.frames}-frame clip of {args.vertices} vertices, not preloaded:")
        for v, name in ((0, "clean"), (1, "speed x1.1")):
            _window_frames(clip, v, start, args.window, None)  # the page cache warm
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                _window_frames(clip, v, start, args.window, None)
                times.append(time.perf_counter() - t0)
            print(f"  {name}: {statistics.median(times) * 1000:.1f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()
