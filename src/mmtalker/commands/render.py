"""``mmtalker render``: an animation (or several side by side) to an mp4 with the speech."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mmtalker.commands.options import check_output_file, frames_text, require_pixels, require_positive
from mmtalker.errors import MMTalkerError
from mmtalker.progress import progress


def register(sub) -> None:
    p = sub.add_parser(
        "render",
        help="render an animation to an mp4 video with sound",
        description=(
            "Render one animation, or several side by side (truth | MMTalker | a peer), as an h264 mp4 with the "
            "speech muxed as AAC. Animations are .npy arrays (T, V, 3) or (T, V*3), as mmtalker and the peers' "
            "repositories save them, or .npz files from 'mmtalker animate'/'export'. The template gives the "
            "faces (triangles) and must have the animation's vertex count; without it the faces an .npz carries "
            "are used."
        ),
        epilog="example: mmtalker render anim.npz --audio speech.wav --template face.obj --out talk.mp4",
    )
    p.add_argument("animations", nargs="+", type=Path, help="animation file(s); several are shown side by side")
    p.add_argument("--template", type=Path, help="mesh file (OBJ/PLY) with the animation's topology (default: the faces "
                   "stored in the first .npz given; needed for .npy animations)")
    p.add_argument("--audio", type=Path, help="speech to mux into the video (any format mmtalker reads)")
    p.add_argument("--out", type=Path, required=True, help="output .mp4 path")
    p.add_argument("--fps", type=float, help="frame rate (default: from the .npz, else 30)")
    p.add_argument("--captions", nargs="+", help="one caption per animation, e.g. truth MMTalker FaceFormer")
    p.add_argument("--heatmap", action="store_true",
                   help="colour every panel after the first by its per-vertex error against the first")
    p.add_argument("--heatmap-max", type=float, metavar="ERROR",
                   help="the error shown red with --heatmap, in the meshes' unit (default: the 99th percentile of all "
                        "errors; give the same value to compare several videos on one scale)")
    p.add_argument("--unit", help="the meshes' length unit, written on the heatmap's colour bar (e.g. m or mm)")
    p.add_argument("--size", type=int, default=384, help="panel width and height in pixels (default 384)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmtalker.audio.io import save_wav
    from mmtalker.data.animation import load_animations
    from mmtalker.render.compose import side_by_side_frames
    from mmtalker.render.video import fit_audio, speech_for_video, write_video

    check_output_file(args.out, args.overwrite)
    require_pixels("--size", args.size)
    if args.captions and len(args.captions) != len(args.animations):
        raise MMTalkerError("--captions", f"gives {len(args.captions)} captions for {len(args.animations)} animations")
    if args.heatmap and len(args.animations) < 2:
        raise MMTalkerError("--heatmap", "needs a reference animation first and at least one more to colour")
    if args.heatmap_max is not None and not args.heatmap:
        raise MMTalkerError("--heatmap-max", "only applies with --heatmap")
    vmax = require_positive("--heatmap-max", args.heatmap_max)
    fps_arg = require_positive("--fps", args.fps)  # given, it replaces the stored fps, even a damaged one
    loaded, faces, _ = load_animations(args.animations, args.template, fps_override=fps_arg)
    fps = fps_arg or next((f for _, f in loaded if f), None) or 30.0
    animations = [v for v, _ in loaded]
    frames = side_by_side_frames(
        animations, faces, captions=args.captions, width=args.size, height=args.size,
        heatmap_against=animations[0] if args.heatmap else None, vmax=vmax, unit=args.unit,
    )
    total = min(len(a) for a in animations)
    if len({len(a) for a in animations}) > 1:
        lengths = ", ".join(f"{p.name} {len(a)}" for p, a in zip(args.animations, animations))
        print(f"mmtalker render: note: the animations differ in length ({lengths} frames): the video shows the "
              f"first {total}", file=sys.stderr)
    audio_path = None
    if args.audio is not None:
        # decode any readable format to a temporary wav that ffmpeg can mux
        speech, rate = speech_for_video(args.audio)
        seconds, shown = len(speech) / rate, total / fps
        if abs(seconds - shown) > 0.5:  # more than half a second cut off or padded with silence
            print(f"mmtalker render: note: {args.audio} lasts {seconds:.2f} s, the video {shown:.2f} s: the speech is "
                  f"{'cut to' if seconds > shown else 'padded with silence to'} the video's length", file=sys.stderr)
        audio = fit_audio(speech, total, fps, rate)
        audio_path = args.out.with_name(f".{args.out.stem}.audio.wav")
        save_wav(audio_path, audio, rate, overwrite=True)
    try:
        write_video(args.out, progress(frames, desc="render", total=total, unit="frame"), fps,
                    audio_path=audio_path, overwrite=args.overwrite)
    finally:
        if audio_path is not None and audio_path.exists():
            audio_path.unlink()
    print(f"wrote {args.out} ({frames_text(total)} at {fps:g} fps, {total / fps:.2f} s)")
    return 0
