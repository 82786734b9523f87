"""``mmtalker stream``: animate speech as it arrives (raw PCM on stdin, or a file fed in chunks)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from mmtalker.audio.io import untagged_mp3
from mmtalker.commands.options import add_device_option, check_output_file, frames_text
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
    p.add_argument("--audio", required=True, help="speech file, or - for raw s16le 16 kHz mono PCM on stdin (headerless: a wav file is given by its path)")
    p.add_argument("--out", type=Path, required=True, help="output .npy or .npz")
    p.add_argument("--style", help="a training subject of the checkpoint (default: the mean style)")
    p.add_argument("--template", type=Path, help="face mesh to animate (default: the checkpoint's template)")
    p.add_argument("--chunk-ms", type=float, default=160.0, help="chunk length in milliseconds, 10 to 10000 (default 160)")
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


CONTAINERS = {b"RIFF": "WAV", b"RF64": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"FORM": "AIFF"}
"""File headers that show stdin holds an audio file, not the raw PCM --audio - reads."""


MAGIC_BYTES = 4096
"""stdin's first bytes read (at least) before any chunk is animated, to tell an audio file from raw PCM."""


def _chunks(args, talker, step: int):
    """Yield (n,) float32 chunks of 16 kHz audio from stdin or a file."""
    if args.audio == "-":
        head = b""  # enough of the start to tell a file from PCM, whatever --chunk-ms is
        while len(head) < MAGIC_BYTES:
            more = sys.stdin.buffer.read(MAGIC_BYTES - len(head))
            if not more:
                break
            head += more
        kind = next((k for magic, k in CONTAINERS.items() if head.startswith(magic)), None) or (
            "MP3" if untagged_mp3(head) else None)
        if kind:
            raise MMTalkerError("--audio -", f"stdin holds {'an' if kind[0] in 'AMO' else 'a'} {kind} file, not "
                                "raw 16-bit 16 kHz mono PCM",
                                "give the file as --audio FILE, or decode it to s16le 16 kHz mono first")
        pending = head
        while True:
            while len(pending) < 2 * step:
                more = sys.stdin.buffer.read(2 * step - len(pending))
                if not more:
                    break
                pending += more
            if not pending:
                return
            raw, pending = pending[: 2 * step], pending[2 * step:]
            raw = raw[: len(raw) // 2 * 2]
            yield np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    else:
        audio = talker.read_audio(args.audio)
        for s in range(0, len(audio), step):
            yield audio[s : s + step]


CHUNK_MS = (10.0, 10000.0)
"""Chunk lengths accepted: one speech-encoder hop (10 ms) to 10 s."""


def _check_options(args) -> None:
    """The timing options, named as the user typed them, before the model loads."""
    if not (CHUNK_MS[0] <= args.chunk_ms <= CHUNK_MS[1]):
        raise MMTalkerError("--chunk-ms", f"must be from {CHUNK_MS[0]:g} to {CHUNK_MS[1]:g} ms, got {args.chunk_ms:g}")
    for option, value, least in (("--context", args.context, None), ("--encoder-context", args.encoder_context, 0.0),
                                 ("--lookahead", args.lookahead, 0.0)):
        if not math.isfinite(value) or (value <= 0 if least is None else value < least):
            raise MMTalkerError(option, f"must be {'positive' if least is None else 'zero or more'} seconds, got {value:g}")


def run(args: argparse.Namespace) -> int:
    from mmtalker.audio.io import SAMPLE_RATE
    from mmtalker.inference.api import MMTalker
    from mmtalker.inference.stream import ENCODER_MARGIN_S, encoder_room_s
    from mmtalker.render.export import export_npz, written_whole

    if args.out.suffix.lower() not in (".npy", ".npz"):
        raise MMTalkerError(args.out, f"unsupported output type '{args.out.suffix}'", "use .npy or .npz")
    check_output_file(args.out, args.overwrite)
    _check_options(args)
    talker = MMTalker.from_pretrained(args.checkpoint, device=args.device)
    room = encoder_room_s(talker.engine)  # checked here too, to name the options as typed
    if room is not None and args.encoder_context + args.lookahead > room:
        raise MMTalkerError("--encoder-context/--lookahead", f"{args.encoder_context:g} s + {args.lookahead:g} s (+ "
                            f"{ENCODER_MARGIN_S:g} s of margin) is longer than the speech encoder takes "
                            f"({room + ENCODER_MARGIN_S:.0f} s)")
    stream = talker.stream(style=args.style, template=args.template, context_s=args.context,
                           encoder_context_s=args.encoder_context, lookahead_s=args.lookahead,
                           incremental=not args.reencode)
    step = max(1, int(round(args.chunk_ms / 1000 * SAMPLE_RATE)))
    blocks, heard = [], 0
    for chunk in _chunks(args, talker, step):
        blocks.append(stream.push(chunk))
        heard += len(chunk)
    if args.audio == "-" and heard < talker.engine.min_samples:  # a file's length is checked when it is read
        raise MMTalkerError("--audio -", f"stdin gave {heard / SAMPLE_RATE * 1000:.0f} ms of audio; at least "
                            f"{talker.engine.min_samples / SAMPLE_RATE * 1000:.0f} ms of speech is needed")
    blocks.append(stream.flush())
    verts = np.concatenate(blocks)
    if len(verts) == 0:
        raise MMTalkerError(args.audio, "gave no audio")
    if args.out.suffix.lower() == ".npy":
        with written_whole(args.out) as f:  # a handle: np.save would add ".npy" to a name ending in ".NPY"
            np.save(f, verts)
    else:
        export_npz(args.out, verts, fps=talker.fps, faces=stream.faces, overwrite=True)
    times = np.asarray(stream.push_seconds) * 1000
    print(f"wrote {args.out} ({frames_text(len(verts))} at {talker.fps:g} fps); compute per {args.chunk_ms:.0f} ms chunk: "
          f"median {np.median(times):.0f} ms, max {times.max():.0f} ms; frame latency = lookahead "
          f"{args.lookahead * 1000:.0f} ms + compute (+ up to one chunk)")
    ran = {name: [s for s in seconds if s > 0] for name, seconds in stream.stage_seconds.items()}
    print("median compute by stage, over the chunks that ran it: " + ", ".join(
        f"{name} {1000 * np.median(seconds):.1f} ms ({len(seconds)} chunks)" if seconds else f"{name} never ran"
        for name, seconds in ran.items()))
    return 0
