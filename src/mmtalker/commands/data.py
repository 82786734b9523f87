"""``mmtalker data``: make the synthetic benchmark, look at it, fetch the default face."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmtalker.commands.options import check_output_folder
from mmtalker.errors import MMTalkerError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="generate the synthetic benchmark, preview a dataset, fetch the default face",
        description="Datasets: generate the synthetic talking-face benchmark (speech, phone timings, face motion "
                    "and its oracle error floor), draw a contact sheet of one sequence, fetch the default face mesh.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    _add_synth(sub)
    _add_preview(sub)
    _add_fetch(sub)


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the synthetic benchmark",
        description="Generate the synthetic benchmark: synthetic voices speak sentences; the face moves with the "
                    "phones (coarticulated jaw and lips that close on p/b/m, blinks at pauses, brows on stress). "
                    "Writes per-sequence vertices, wav and phone alignment, the oracle motion beside them, "
                    "templates, landmarks, region index sets, VOCASET-like splits and manifest.json with the "
                    "oracle's error floor.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    p.add_argument("--preset", default="default",
                   help="dataset size: tiny (tests, seconds), default (about 1 minute), large (4x the training sentences) "
                   "or wide-test (default with 5x the test sentences: score models trained on default on more clips)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default 0)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second of the motion (default 30)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out that holds an earlier benchmark: its files are deleted first (a folder holding other files is refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary at the end")
    p.set_defaults(func=_synth)


def _add_preview(sub) -> None:
    p = sub.add_parser(
        "preview",
        help="contact sheet PNG of one sequence",
        description="Draw a contact sheet of frames of one sequence, the phone under each: a closed mouth on a "
                    "bilabial, an open one on a vowel, a blink.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder (with manifest.json)")
    p.add_argument("--sequence", help="sequence key (default: the first test sequence)")
    p.add_argument("--out", type=Path, help="PNG to write (default: DATASET_preview.png beside the dataset folder)")
    p.add_argument("--frames", type=int, default=10, help="frames on the sheet (default 10)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    p.set_defaults(func=_preview)


def _add_fetch(sub) -> None:
    p = sub.add_parser(
        "fetch-template",
        help="fetch the default face mesh into the cache",
        description="Fetch the default face template (menpo3d's template.ply) into the mmtalker cache; the "
                    "procedural head is used when it cannot be had.",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_fetch)


def _synth(args: argparse.Namespace) -> int:
    from mmtalker.synth.generate import generate

    if args.fps <= 0 or args.fps > 1000:
        raise MMTalkerError(f"--fps {args.fps}", "must be a frame rate above 0 and at most 1000", "30 is the usual value")
    if args.workers < 1:
        raise MMTalkerError(f"--workers {args.workers}", "must be at least 1")
    if args.seed < 0:
        raise MMTalkerError(f"--seed {args.seed}", "must be 0 or more")
    check_output_folder(args.out)
    before = os.environ.get("MMTALKER_QUIET")
    if args.quiet:
        os.environ["MMTALKER_QUIET"] = "1"
    try:
        manifest = generate(args.out, preset=args.preset, seed=args.seed, fps=args.fps,
                            overwrite=args.overwrite, workers=args.workers)
    finally:
        if before is None:
            os.environ.pop("MMTALKER_QUIET", None)
        else:
            os.environ["MMTALKER_QUIET"] = before
    if not args.quiet:
        floor = manifest.extra["oracle_floor"]
        print(f"wrote {args.out}: {manifest.extra['sequences']} sequences at {manifest.fps:g} fps")
        for split, m in floor.items():
            s = m["units"]["report_scale"]
            print(f"  oracle floor on {split}: LVE {m['lve'] * s:.4f}  EVE {m['eve'] * s:.4f}  "
                  f"FDD {m['fdd'] * s:+.4f} (×1e-5 m²)")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from mmtalker.synth.preview import write_preview

    dataset = args.dataset.resolve()
    if dataset.is_dir() and not (dataset / "manifest.json").is_file():  # not the hint of open_dataset: no --preset here
        raise MMTalkerError(args.dataset, "has no manifest.json: preview draws datasets in mmtalker's own format",
                            "such as the synthetic benchmark (`mmtalker data synth`), whose manifest has its phones and landmarks")
    out = args.out if args.out is not None else dataset.parent / f"{dataset.name}_preview.png"
    path = write_preview(args.dataset, out, sequence=args.sequence, num_frames=args.frames, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from mmtalker.synth.face import fetch_template

    path = fetch_template(quiet=args.quiet)
    if not args.quiet:
        print(f"face template: {path}")
    return 0
