"""Streaming latency and speed: speech fed in microphone-sized chunks, frames out as they are due.

    .venv/bin/python benchmarks/bench_streaming.py [--checkpoint DIR] [--chunk-ms 160] [--context 2]
        [--lookahead 0.06] [--reencode [--encoder-context 0.5]]

Feeds --seconds of speech (the fixtures) chunk by chunk into ``MMTalker.stream`` as fast as it can (no
sleeping) in a fresh 2-thread process, and reports per chunk the compute time of ``push`` (the latency a
chunk adds once it has arrived), the real-time factor (audio duration / total compute), and the latency of
a frame: lookahead + push time (+ up to one chunk of buffering). Without --checkpoint a random model
with the shipped config's network runs on the default face. Also reports how close the streamed frames
are to the offline animation of the same audio, after the first --context seconds. A Whisper encoder
runs incrementally (each encoder frame computed about once); --reencode measures the other way, re-encoding
--encoder-context seconds of audio with every chunk.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import Timer, checkpoint_or_random, machine_note, peak_rss_mb, run_worker, speech  # noqa: E402


def worker(args) -> None:
    import numpy as np
    import torch

    from mmtalker.audio.io import SAMPLE_RATE
    from mmtalker.inference.api import MMTalker

    torch.set_num_threads(args.threads)
    audio = speech(args.seconds)
    talker = MMTalker.from_pretrained(args.checkpoint)
    opts = dict(context_s=args.context, encoder_context_s=args.encoder_context, lookahead_s=args.lookahead,
                incremental=not args.reencode)
    anim = talker.stream(**opts)
    step = int(args.chunk_ms / 1000 * SAMPLE_RATE)
    for s in range(0, 20 * step, step):  # warm-up: the first calls allocate
        anim.push(audio[s : s + step])
    anim = talker.stream(**opts)
    walls, cpus, blocks = [], [], []
    for s in range(0, len(audio), step):
        with Timer() as t:
            blocks.append(anim.push(audio[s : s + step]))
        walls.append(t.wall)
        cpus.append(t.cpu)
    blocks.append(anim.flush())
    streamed = np.concatenate(blocks)
    offline = talker.animate(audio)
    skip = int(args.context * talker.fps)
    rest = talker.template_mesh.vertices
    a, b = (offline - rest)[skip:].ravel(), (streamed - rest)[skip:].ravel()
    print(json.dumps({
        "seconds": len(audio) / SAMPLE_RATE, "chunks": len(walls), "frames": len(streamed), "vertices": streamed.shape[1],
        "wall_s": np.percentile(walls, [50, 95, 100]).tolist(), "cpu_s": np.percentile(cpus, [50, 95, 100]).tolist(),
        "total_wall": float(np.sum(walls)), "total_cpu": float(np.sum(cpus)), "corr": float(np.corrcoef(a, b)[0, 1]),
        "rel_err": float(np.abs(a - b).mean() / np.abs(a).mean()), "peak_rss_mb": peak_rss_mb(),
        "stages_s": {k: float(np.median(v)) for k, v in anim.stage_seconds.items()},
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint folder (default: a random model on the default face)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--chunk-ms", type=float, default=160.0)
    p.add_argument("--context", type=float, default=2.0, help="seconds of past speech features the model sees")
    p.add_argument("--encoder-context", type=float, default=0.5, help="seconds of past audio the speech encoder re-encodes per chunk")
    p.add_argument("--lookahead", type=float, default=0.06, help="seconds of future audio a frame waits for")
    p.add_argument("--reencode", action="store_true",
                   help="re-encode --encoder-context seconds with every chunk instead of running Whisper incrementally")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vertices", type=int, default=5000, help="default face size when no checkpoint is given")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    checkpoint, what, _keep = checkpoint_or_random(args.checkpoint, args.vertices)
    print(f"model: {what}")
    print(machine_note(args.threads))
    r = run_worker(__file__, ["--checkpoint", checkpoint, "--seconds", str(args.seconds), "--chunk-ms", str(args.chunk_ms),
                              "--context", str(args.context), "--encoder-context", str(args.encoder_context),
                              "--lookahead", str(args.lookahead), *(["--reencode"] if args.reencode else []),
                              "--threads", str(args.threads)], args.threads)
    ms = lambda xs: " / ".join(f"{1000 * x:.0f}" for x in xs)  # noqa: E731
    n = args.threads
    encoder = f"encoder context {args.encoder_context} s re-encoded per chunk" if args.reencode else "incremental encoder"
    print(f"{r['seconds']:.0f} s of speech in {r['chunks']} chunks of {args.chunk_ms:.0f} ms -> {r['frames']} frames x "
          f"{r['vertices']} vertices; context {args.context} s, {encoder}, lookahead {args.lookahead} s")
    print(f"push time per chunk, median / p95 / max: wall {ms(r['wall_s'])} ms; CPU/threads "
          f"{ms([c / n for c in r['cpu_s']])} ms")
    print("median per push by stage (wall): " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in r["stages_s"].items()))
    print(f"real-time factor: {r['seconds'] / r['total_wall']:.1f}x by wall time, "
          f"{r['seconds'] / (r['total_cpu'] / n):.1f}x by CPU/threads")
    print(f"frame latency (median): lookahead {1000 * args.lookahead:.0f} ms + push {1000 * r['wall_s'][0]:.0f} ms wall "
          f"({1000 * (args.lookahead + r['wall_s'][0]):.0f} ms; + up to {args.chunk_ms:.0f} ms of chunk buffering)")
    print(f"streamed vs offline after {args.context} s: correlation {r['corr']:.3f}, mean |difference| "
          f"{100 * r['rel_err']:.0f}% of the mean |displacement|; peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
