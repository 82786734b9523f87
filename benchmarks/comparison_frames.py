"""Frames of one unseen test sentence: the truth and each model side by side, as a PNG contact sheet.

Rows are frames chosen to show a lip closure (p/b/m), open vowels and a rest pose, labelled with the phone
under them (from the synthetic benchmark's alignment); columns are truth, then each checkpoint.

    python benchmarks/comparison_frames.py --data DIR --checkpoint runs/cmp/mmtalker/best \
        --checkpoint runs/cmp/voca/best --out docs/images/comparison_frames.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BILABIAL = {"p", "b", "m"}
OPEN = {"ɑ", "a", "æ", "aɪ", "aʊ", "ɔ"}


def pick_frames(alignment, fps: float, count: int) -> list[tuple[int, str]]:
    """Frame indices at the centres of bilabials and open vowels, alternating, plus the first pause."""
    closures = [p for p in alignment if p["symbol"] in BILABIAL]
    vowels = [p for p in alignment if p["symbol"] in OPEN]
    picked = []
    for pair in zip(closures, vowels):
        picked.extend(pair)
    picked = picked[: count - 1] + [alignment[0]]
    return [(int(round((p["start"] + p["end"]) / 2 * fps)), p["symbol"]) for p in sorted(picked, key=lambda p: p["start"])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--sequence", help="sequence key (default: the first test sequence)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from PIL import Image, ImageDraw

    from mmtalker.data.dataset import open_dataset
    from mmtalker.render.compose import label_font
    from mmtalker.render.renderer import MeshRenderer, fit_camera
    from mmtalker.inference.evaluate import checkpoint_predictor

    dataset = open_dataset(args.data)
    seq = dataset.sequence(args.sequence) if args.sequence else dataset.sequences("test")[0]
    truth = seq.vertices()
    columns = [("truth", truth)]
    for ckpt in args.checkpoint:
        name, predict = checkpoint_predictor(ckpt, dataset)
        columns.append((name.split(" (")[0], predict(seq)[0]))
    frames = pick_frames(seq.alignment(), seq.fps, args.frames)
    lips = truth[0][dataset.region("lips")]
    face = truth[0][truth[0][:, 1] > lips[:, 1].min() - 0.03]  # frame the face from the chin up
    renderer = MeshRenderer(dataset.topology().faces, width=args.size, height=args.size, camera=fit_camera(face))
    label_w, head_h = 70, 24
    sheet = Image.new("RGB", (label_w + args.size * len(columns), head_h + args.size * len(frames)), "white")
    draw = ImageDraw.Draw(sheet)
    font = label_font(14)
    for c, (name, _) in enumerate(columns):
        draw.text((label_w + c * args.size + 6, 4), name, fill="black", font=font)
    for r, (t, phone) in enumerate(frames):
        draw.text((6, head_h + r * args.size + args.size // 2 - 8), f"/{phone}/\n{t / seq.fps:.2f} s", fill="black", font=font)
        for c, (_, anim) in enumerate(columns):
            image = renderer.render(anim[min(t, len(anim) - 1)])
            sheet.paste(Image.fromarray(image), (label_w + c * args.size, head_h + r * args.size))
    renderer.release()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({seq.key}: {len(frames)} frames x {len(columns)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
