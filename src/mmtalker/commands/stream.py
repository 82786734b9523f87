"""``mmtalker stream``: animate speech as it arrives (raw PCM on stdin, or a file fed in chunks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mmtalker.commands.options import add_device_option
from mmtalker.errors import MMTalkerError


def register(sub) -> None:
    p = sub.add_parser(
        "stream",
        help="animate live speech chunk by chunk (stdin PCM or a file), reporting latency",
        description=(
            "Animate speech as it arrives, the way a live application would: audio comes in chunks, and every "
            "frame is emitted as soon as its audio plus --lookahead has arrived (a Whisper speech encoder runs "
            "incrementally, each of its frames computed about once; other encoders, or --reencode, re-encode the "
            "last --encoder-context seconds with each chunk; the model sees the last --context seconds of "
            "features). --audio - reads raw 16-bit little-endian mono PCM at 16 kHz from stdin "
            "(e.g. arecord -f S16_LE -r 16000 -c 1 | mmtalker stream ...); a file is fed in --chunk-ms chunks as "
            "fast as possible. Writes the frames to --out (.npy or .npz) at the end and prints the compute time "
            "per chunk."
        ),
        epilog="example: arecord -f S16_LE -r 16000 -c 1 | mmtalker stream --checkpoint runs/demo/mmtalker/best --audio - --out live.npz",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--audio", required=True, help="speech file, or - for raw s16le 16 kHz mono PCM on stdin")
    p.add_argument("--out", type=Path, required=True, help="output .npy or .npz")
    p.add_argument("--style", help="a training subject of the checkpoint (default: the mean style)")
    p.add_argument("--template", type=Path, help="face mesh to animate (default: the checkpoint's template)")
    p.add_argument("--chunk-ms", type=float, default=160.0, help="chunk length in milliseconds (default 160)")
    p.add_argument("--context", type=float, default=2.0, help="seconds of past speech features the model sees (default 2)")
    p.add_argument("--encoder-context", type=float, default=0.5,
                   help="seconds of past audio a non-incremental speech encoder re-encodes per chunk (default 0.5; "
                        "longer: closer to offline, slower)")
    p.add_argument("--reencode", action="store_true",
                   help="re-encode --encoder-context seconds per chunk even with a Whisper encoder (slower, further from offline)")
    p.add_argument("--lookahead", type=float, default=0.06, help="seconds of future audio a frame waits for (default 0.06)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def _chunks(args, talker, step: int):
    """Yield (n,) float32 chunks of 16 kHz audio from stdin or a file."""
    if args.audio == "-":
        while True:
            raw = sys.stdin.buffer.read(2 * step)
            if not raw:
                return
            raw = raw[: len(raw) // 2 * 2]
            yield np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    else:
        audio = talker.read_audio(args.audio)
        for s in range(0, len(audio), step):
            yield audio[s : s + step]


def run(args: argparse.Namespace) -> int:
    from mmtalker.audio.io import SAMPLE_RATE
    from mmtalker.inference.api import MMTalker
    from mmtalker.render.export import export_npz

    if args.out.suffix.lower() not in (".npy", ".npz"):
        raise MMTalkerError(args.out, f"unsupported output type '{args.out.suffix}'", "use .npy or .npz")
    if args.out.exists() and not args.overwrite:
        raise MMTalkerError(args.out, "already exists", "pass --overwrite to replace it")
    talker = MMTalker.from_pretrained(args.checkpoint, device=args.device)
    stream = talker.stream(style=args.style, template=args.template, context_s=args.context,
                           encoder_context_s=args.encoder_context, lookahead_s=args.lookahead,
                           incremental=not args.reencode)
    step = max(1, int(round(args.chunk_ms / 1000 * SAMPLE_RATE)))
    blocks = [stream.push(chunk) for chunk in _chunks(args, talker, step)]
    blocks.append(stream.flush())
    verts = np.concatenate(blocks)
    if len(verts) == 0:
        raise MMTalkerError(args.audio, "gave no audio")
    if args.out.suffix.lower() == ".npy":
        np.save(args.out, verts)
    else:
        export_npz(args.out, verts, fps=talker.fps, faces=stream.faces, overwrite=True)
    times = np.asarray(stream.push_seconds) * 1000
    print(f"wrote {args.out} ({len(verts)} frames at {talker.fps:g} fps); compute per {args.chunk_ms:.0f} ms chunk: "
          f"median {np.median(times):.0f} ms, max {times.max():.0f} ms; frame latency = lookahead "
          f"{args.lookahead * 1000:.0f} ms + compute (+ up to one chunk)")
    print("median compute per chunk by stage: " + ", ".join(
        f"{name} {1000 * np.median(seconds):.1f} ms" for name, seconds in stream.stage_seconds.items()))
    return 0
