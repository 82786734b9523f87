"""``mmtalker animate``: speech in, a talking face out (vertex arrays, optionally an mp4 with the speech)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from mmtalker.commands.options import add_device_option, check_output_file, frames_text, require_pixels
from mmtalker.errors import MMTalkerError
from mmtalker.inference.windows import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S

OUTPUT_SUFFIXES = (".npy", ".npz")


def register(sub) -> None:
    p = sub.add_parser(
        "animate",
        help="animate a face from speech with a trained checkpoint",
        description=(
            "Animate a face mesh from speech with a trained checkpoint: MMTalker's, or a peer's (VOCA, "
            "FaceFormer, CodeTalker; on its own topology only). Any audio mmtalker reads "
            "(wav, flac, ogg, mp3; any rate; mono or stereo) and of any length: long audio runs in overlapping "
            "20 s windows with a crossfade. The output has one frame per 1/fps s at the checkpoint's frame rate: "
            ".npy holds the vertices (T, V, 3) float32, .npz holds vertices, fps and faces. --template animates "
            "another face with the checkpoint's topology (placed, turned or mirrored anywhere: it is animated moved onto "
            "the checkpoint's face and its motion brought back, with a warning), or a mesh of another resolution lying "
            "on the checkpoint's face (e.g. its template subdivided), retargeted through the UV displacement field."
        ),
        epilog="example: mmtalker animate --checkpoint runs/demo/mmtalker/best --audio speech.wav --out anim.npz --video talk.mp4 (runs/demo/mmtalker/best: the model the demo trains; a training run has its own best/ folder)",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (model.safetensors + config.json) of any model kind")
    p.add_argument("--audio", type=Path, required=True, help="speech file")
    p.add_argument("--out", type=Path, required=True, help="output .npy or .npz")
    p.add_argument("--template", type=Path, help="face mesh (OBJ/PLY) to animate (default: the checkpoint's template)")
    p.add_argument("--style", help="speaking style: a training subject of the checkpoint (default: their mean)")
    p.add_argument("--video", type=Path, help="also render an mp4 with the speech to this path")
    p.add_argument("--size", type=int, default=512, help="video width and height in pixels (default 512)")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW_S,
                   help=f"window length for long audio, seconds (default {DEFAULT_WINDOW_S:g}, at most 30)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP_S,
                   help=f"crossfade between windows, seconds (default {DEFAULT_OVERLAP_S:g}; under half the window)")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out and --video if they exist")
    p.set_defaults(func=run)


def _check_outputs(args) -> None:
    if args.out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise MMTalkerError(args.out, f"unsupported output type '{args.out.suffix}'", "use .npy or .npz")
    if args.video is not None and args.video.suffix.lower() != ".mp4":
        raise MMTalkerError(args.video, "the video must be an .mp4")
    check_output_file(args.out, args.overwrite)
    check_output_file(args.video, args.overwrite, "--video")
    if args.video is not None and args.video.resolve() == args.out.resolve():
        raise MMTalkerError(args.video, "is the same file as --out")
    require_pixels("--size", args.size)  # before any work: a bad size would fail after --out was written


def _write_frames(talker, samples, args, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Animate to --out window by window. ``.npy`` frames go straight to the file (memory for one window
    only); ``.npz`` is compressed at the end. Returns (vertices (T, P, 3), possibly memory-mapped, faces, and for a
    face placed or turned otherwise than the checkpoint's the turn that shows it front-on (None: it already is))."""
    from mmtalker.inference.npy_writer import NpyBlockWriter
    from mmtalker.progress import progress
    from mmtalker.render.export import export_npz

    face = talker.prepare_face(args.style, args.template)
    shape = (num_frames, face.num_points, 3)
    to_npy = args.out.suffix.lower() == ".npy"
    writer = NpyBlockWriter(args.out, shape) if to_npy else None
    verts = None if to_npy else np.empty(shape, np.float32)
    bar = progress(desc="animate", total=num_frames, unit="frame")
    try:
        for start, block in talker.iter_animate(samples, face=face, num_frames=num_frames,
                                                window_s=args.window, overlap_s=args.overlap):
            if to_npy:
                writer.write(block)
            else:
                verts[start : start + len(block)] = block
            bar.update(len(block))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    if to_npy:
        writer.close()
        return np.load(args.out, mmap_mode="r"), face.faces, face.turn
    export_npz(args.out, verts, fps=talker.fps, faces=face.faces, overwrite=True)  # written whole or not at all
    return verts, face.faces, face.turn


class _Turned:
    """Frames (T, P, 3) turned by ``matrix`` one at a time as they are drawn: a memory-mapped hour of animation stays
    on disk, not turned whole in memory."""

    def __init__(self, frames, matrix: np.ndarray):
        self.frames, self.matrix = frames, matrix
        self.shape = frames.shape

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t):
        return np.asarray(self.frames[t]) @ self.matrix


def _render(args, verts: np.ndarray, faces: np.ndarray, fps: float) -> None:
    from mmtalker.audio.io import save_wav
    from mmtalker.progress import progress
    from mmtalker.render.compose import side_by_side_frames
    from mmtalker.render.video import fit_audio, speech_for_video, write_video

    audio_path = args.video.with_name(f".{args.video.stem}.audio{os.getpid()}.wav")
    speech, rate = speech_for_video(args.audio)  # the recording's own rate, not the 16 kHz the model heard
    save_wav(audio_path, fit_audio(speech, len(verts), fps, rate), rate, overwrite=True)
    try:
        frames = side_by_side_frames([verts], faces, width=args.size, height=args.size)
        write_video(args.video, progress(frames, desc="render", total=len(verts), unit="frame"), fps,
                    audio_path=audio_path, overwrite=args.overwrite)
    finally:
        if audio_path.exists():
            audio_path.unlink()


def _check_windows(args, talker) -> None:
    """--window and --overlap, checked in the seconds the user gave and in the model's frames, before any work."""
    from mmtalker.inference.windows import frames_for_window

    if not args.window > 0:
        raise MMTalkerError("--window", f"must be a positive number of seconds, got {args.window:g}")
    longest = talker.max_window_s  # checked here too, to name the option as typed
    if longest is not None and args.window > longest:
        raise MMTalkerError("--window", f"{args.window:g} s is longer than the speech encoder takes "
                            f"({longest:.0f} s)", "use a shorter window")
    if not 0 <= args.overlap < args.window / 2:
        raise MMTalkerError("--overlap", f"{args.overlap:g} s must be at least 0 and under half the window "
                            f"({args.window / 2:g} s)")
    try:  # in frames too: at 30 fps a 0.49 s overlap of a 1 s window is 15 frames of 30
        frames_for_window(args.window, args.overlap, talker.fps)
    except MMTalkerError as exc:
        raise MMTalkerError("--overlap", exc.problem, exc.hint) from None


def run(args: argparse.Namespace) -> int:
    from mmtalker.inference.api import MMTalker

    _check_outputs(args)
    talker = MMTalker.from_pretrained(args.checkpoint, device=args.device)
    talker.subject_index(args.style)  # an unknown style fails before any work
    _check_windows(args, talker)
    samples = talker.read_audio(args.audio)
    T = talker.num_frames_for(len(samples))
    verts, faces, turn = _write_frames(talker, samples, args, T)
    print(f"wrote {args.out} ({frames_text(T)} × {verts.shape[1]} vertices at {talker.fps:g} fps, {T / talker.fps:.2f} s)")
    if args.video is not None:
        # the video looks at the face as the checkpoint's face is looked at: a Z-up export turned back front-on
        _render(args, verts if turn is None else _Turned(verts, turn.T), faces, talker.fps)
        print(f"wrote {args.video}")
    return 0
