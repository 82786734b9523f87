"""How large do models make the predictable eye events? Blinks at pauses and brow raises, against the oracle.

The synthetic benchmark's oracle holds the part of the upper-face motion that the audio predicts: the
*expected* blink at each pause (the blink shape averaged over its random start, times its probability) and
the brow raise on stressed vowels (mmtalker.synth.eyes). EVE mixes that with what no model can predict
(random blinks, sensor noise), so this script looks at the predictable part alone. On the frames where the
oracle moves some eye-region vertex by at least ``--threshold-mm`` (pause blinks, almost all in a clip's
leading and trailing silence), it fits each frame's predicted eye displacement as ``a`` × the oracle's and
reports the mean ``a`` (1: full size, 0: no movement) and the eye distance to the oracle (per frame the max
over eye-region vertices of the squared distance, averaged like EVE), for frames within ``--edge-frames`` of
a clip's start or end and for the rest. At the edges it also splits each frame's error into the part along
the oracle's own eye motion ((a − 1) × the oracle's: size and timing) and the part across it (shape), each
scored the same way.

A second table splits the eye-region error against the oracle in a clip's first and last ``--edge-frames``
frames into its *bias*, the part common to all clips of the split (the frame-by-frame mean error over clips),
and its *variance*, the rest, each as the mean over clips, frames and eye-region vertices of the squared
error. The oracle's blink in a clip's leading silence is the same for every clip of a speaker, so a model
whose lead-in blink changes from clip to clip shows it as variance.

    python benchmarks/eye_events.py --data data/synth --split val --checkpoint runs/a/best --checkpoint runs/b/best

Measured (docs/results.md, 2026-11-30): MMTalker with the eye weight 0.5 and plain window starts made the
pause blinks at clip edges at 0.31–0.43 of their size (three seeds; VOCA 0.76–0.85), on its training
sentences too. With the shipped config the lead-in variance was 2–4× VOCA's (fifth round).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _bench_common import open_split, report_unit  # noqa: E402
from mmtalker.errors import MMTalkerError  # noqa: E402


def eye_events(predict, sequences, dataset, eyes: np.ndarray, threshold: float, edge_frames: int) -> tuple[dict, dict]:
    """Amplitude ratios and oracle distances of one prediction source over ``sequences``, by frame position;
    and the per-clip eye errors against the oracle in the first and last ``edge_frames`` frames
    (``{"lead": [...], "trail": [...]}``, each (edge_frames, E, 3), from the clips at least that long)."""
    out = {part: {"amp": [], "dist": 0.0, "along": 0.0, "across": 0.0, "frames": 0} for part in ("edges", "middle", "all")}
    edges = {"lead": [], "trail": []}
    for seq in sequences:
        oracle = seq.oracle()
        if oracle is None:
            raise MMTalkerError(seq.key, "has no oracle motion", "this check needs the synthetic benchmark (oracle_npy/)")
        template = np.asarray(dataset.template(seq.subject), np.float32)
        pred = predict(seq)[0]
        T = min(len(pred), len(oracle))
        o = oracle[:T, eyes] - template[eyes]  # (T, E, 3)
        p = pred[:T, eyes] - template[eyes]
        moving = np.linalg.norm(o, axis=-1).max(1) >= threshold
        dist = ((p - o) ** 2).sum(-1).max(1)  # (T,)
        edge = np.zeros(T, bool)
        edge[:edge_frames] = edge[max(T - edge_frames, 0):] = True
        amp = (p * o).sum((1, 2)) / np.maximum((o * o).sum((1, 2)), 1e-30)
        # the error split per frame into the part along the oracle's own eye motion (size, timing) and the
        # part across it (shape), each scored alone like EVE (so the two do not add up exactly)
        along = (((amp - 1)[:, None, None] * o) ** 2).sum(-1).max(1)
        across = ((p - amp[:, None, None] * o) ** 2).sum(-1).max(1)
        if T >= edge_frames:
            edges["lead"].append(p[:edge_frames] - o[:edge_frames])
            edges["trail"].append(p[T - edge_frames:] - o[T - edge_frames:])
        for part, sel in (("edges", edge), ("middle", ~edge), ("all", np.ones(T, bool))):
            out[part]["amp"].extend(amp[sel & moving].tolist())
            out[part]["dist"] += float(dist[sel].sum())
            out[part]["along"] += float(along[sel].sum())
            out[part]["across"] += float(across[sel].sum())
            out[part]["frames"] += int(sel.sum())
    return out, edges


def bias_variance(errors: list) -> tuple[float, float, int]:
    """(bias, variance, clips) of per-clip errors, each (F, E, 3): the squared error averaged over clips, frames
    and vertices, split into the squared clip-mean error (bias) and the rest (variance)."""
    if not errors:
        return float("nan"), float("nan"), 0
    err = np.stack(errors)  # (N, F, E, 3)
    total = float((err**2).sum(-1).mean())
    bias = float((err.mean(0) ** 2).sum(-1).mean())
    return bias, total - bias, len(errors)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth", help="the synthetic benchmark (needs its oracle motion)")
    ap.add_argument("--split", default="val", help="split to look at (default: val)")
    ap.add_argument("--checkpoint", action="append", required=True, help="a checkpoint folder of any model kind (repeatable)")
    ap.add_argument("--threshold-mm", type=float, default=1.0, help="an eye event: the oracle moves an eye vertex this far (mm)")
    ap.add_argument("--edge-frames", type=int, default=15, help="frames from a clip's start or end that count as its edges")
    ap.add_argument("--every", type=int, default=1, help="use every N-th sequence of the split (quicker on train)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from mmtalker.inference.evaluate import checkpoint_predictor

    try:
        ds, regions, seqs = open_split(args.data, args.split, ("eyes",), args.every)
        eyes = regions.eyes
        length = ds.manifest.units.get("length", "m")
        metres = {"m": 1.0, "mm": 1e-3}
        if length not in metres:
            raise MMTalkerError(args.data, f"has length unit {length!r}; this check knows {', '.join(metres)}")
        metre = metres[length]
        threshold = args.threshold_mm * 1e-3 / metre
        report, unit = report_unit(ds)
        print(f"{args.data} split {args.split}: {len(seqs)} sequences; eye events: oracle eye movement ≥ {args.threshold_mm} mm; "
              f"edges: the first and last {args.edge_frames} frames; distances {unit}")
        print("| checkpoint | amplitude at edges | at the middle | all | events (edges / middle) | distance to oracle, edges | middle | all "
              "| edges: along the oracle's motion | across it |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        splits = []
        for ckpt in args.checkpoint:
            _, predict = checkpoint_predictor(ckpt, ds)
            r, clip_edges = eye_events(predict, seqs, ds, eyes, threshold, args.edge_frames)
            amp = {k: (f"{np.mean(v['amp']):.2f}" if v["amp"] else "–") for k, v in r.items()}
            dist = {k: v["dist"] / max(v["frames"], 1) * report for k, v in r.items()}
            e = r["edges"]
            along, across = (e[k] / max(e["frames"], 1) * report for k in ("along", "across"))
            print(f"| {ckpt} | {amp['edges']} | {amp['middle']} | {amp['all']} | {len(r['edges']['amp'])} / {len(r['middle']['amp'])} | "
                  f"{dist['edges']:.4f} | {dist['middle']:.4f} | {dist['all']:.4f} | {along:.4f} | {across:.4f} |", flush=True)
            splits.append((ckpt, bias_variance(clip_edges["lead"]), bias_variance(clip_edges["trail"])))
        fine = report * 1e3
        print(f"\nEye-region error against the oracle in the first / last {args.edge_frames} frames, split over clips "
              f"(mean over clips, frames and eye-region vertices, ×{1 / fine:g} {length}²):")
        print("| checkpoint | clips | lead-in bias | lead-in variance | trailing bias | trailing variance |")
        print("| --- | --- | --- | --- | --- | --- |")
        for ckpt, (lb, lv, n), (tb, tv, _) in splits:
            print(f"| {ckpt} | {n} | {lb * fine:.2f} | {lv * fine:.2f} | {tb * fine:.2f} | {tv * fine:.2f} |")
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
