"""Does a model trained on the synthetic benchmark move right on human speech?

For each human recording (../shared/fixtures/audio by default) it animates the benchmark's face, measures
the mouth opening per frame (the inner-lip gap between the iBUG landmarks 61-67, 62-66, 63-65) and the
speech's loudness per frame (RMS in dB), and reports:

- the correlation of mouth opening with loudness over the frames (speech opens the mouth),
- the share of silent frames (loudness more than 30 dB below the loudest frame) whose lips rest closed
  (gap below 2 mm),

and draws both curves, one panel per recording, to a PNG.

    python benchmarks/human_speech_check.py --checkpoint runs/demo/mmtalker/best --data runs/demo/data \
        --out docs/images/human_speech.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper and lower inner-lip landmarks, iBUG order
SILENCE_DB = -30.0  # below the loudest frame
CLOSED_M = 0.002


def loudness_db(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """RMS level in dB of each frame's audio window (one frame period wide), relative to the loudest frame."""
    hop = sample_rate / fps
    out = np.empty(num_frames)
    for t in range(num_frames):
        a = audio[int(t * hop): int((t + 1) * hop)]
        out[t] = 10 * np.log10(np.mean(a.astype(np.float64) ** 2) + 1e-12) if a.size else -120.0
    return out - out.max()


def mouth_gap(vertices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap per frame, in the mesh's unit."""
    gaps = [np.linalg.norm(vertices[:, landmarks[a]] - vertices[:, landmarks[b]], axis=-1) for a, b in LIP_PAIRS]
    return np.mean(gaps, axis=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the synthetic benchmark (for its landmarks)")
    parser.add_argument("--audio", type=Path, nargs="*", help="recordings (default: ../shared/fixtures/audio/*.wav)")
    parser.add_argument("--out", type=Path, default=Path("human_speech.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmtalker.audio.io import SAMPLE_RATE, load_audio
    from mmtalker.data.dataset import open_dataset
    from mmtalker.inference.api import MMTalker

    dataset = open_dataset(args.data)
    landmarks = np.loadtxt(args.data / dataset.manifest.extra["landmarks"]["file"], dtype=np.int64)
    files = args.audio or sorted((REPO.parent / "shared" / "fixtures" / "audio").glob("*.wav"))
    if not files:
        print("no recordings found; pass --audio", file=sys.stderr)
        return 1
    talker = MMTalker.from_pretrained(args.checkpoint)
    template = dataset.template(dataset.subjects[0])
    fig, axes = plt.subplots(len(files), 1, figsize=(10, 2.2 * len(files)), squeeze=False)
    print(f"{'recording':34s} {'seconds':>7s} {'corr(open, loudness)':>21s} {'closed in silence':>18s}")
    for ax, path in zip(axes[:, 0], files):
        audio = load_audio(path)
        verts = talker.animate(audio, template=template)
        fps = talker.fps
        gap = mouth_gap(verts, landmarks)
        rest = mouth_gap(template[None], landmarks)[0]
        opening = gap - rest
        loud = loudness_db(audio, SAMPLE_RATE, len(verts), fps)
        corr = float(np.corrcoef(opening, np.maximum(loud, -60))[0, 1])
        silent = loud < SILENCE_DB
        closed = float(np.mean(gap[silent] < CLOSED_M)) if silent.any() else float("nan")
        print(f"{path.name:34s} {len(audio) / SAMPLE_RATE:7.2f} {corr:21.2f} {closed:17.0%} ({silent.sum()} frames)")
        t = np.arange(len(verts)) / fps
        ax.plot(t, opening * 1000, color="C3", label="mouth opening (mm)")
        ax.set_ylabel("mm")
        ax2 = ax.twinx()
        ax2.plot(t, loud, color="C0", alpha=0.5, label="loudness (dB)")
        ax2.set_ylim(-70, 5)
        ax2.set_ylabel("dB")
        ax.set_title(f"{path.name}: corr {corr:.2f}, closed in {closed:.0%} of silent frames", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
