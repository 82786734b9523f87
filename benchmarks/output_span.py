"""Can a model's output space hold the motion it should make? The oracle projected onto each model's span.

MMTalker decodes every frame as a mix of K displacement fields over the face (the low-rank regressor's basis,
fixed once the face is known); VOCA's decoder is linear too (a 50-d code times a matrix, plus a bias). So
each frame a model can produce lies in a fixed linear span, and no frame can be closer to the truth than the
truth's least-squares projection onto that span. This script projects the synthetic benchmark's oracle
motion (the part of the motion the audio predicts) onto each checkpoint's span, per subject template, and
scores the projection like the metrics: per frame the maximum over a region's vertices of the squared
distance, averaged over frames (eye region: over the frames within ``--edge-frames`` of a clip's start or
end, where the pause blinks are; lips: over all frames). A large value means the model cannot make that
motion, however well it hears the audio.

    python benchmarks/output_span.py --data data/synth --split val --checkpoint runs/a/best --checkpoint runs/b/best

Measured (docs/results.md, 2026-11-30, val split, ×1e-5 m²): MMTalker without the UV feature grid 0.018 /
0.032 / 0.030 on the eyes at clip edges (three seeds), with it 0.003–0.009; VOCA 0.0002–0.0003.
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


def output_basis(model, template: np.ndarray, where: str = "checkpoint") -> np.ndarray:
    """(N, 3V) rows spanning every displacement (dataset unit) the model can output for a face of ``template``."""
    import torch

    kind = type(model).__name__
    with torch.no_grad():
        if kind == "MMTalker":
            if model.config.regressor_rank <= 0:
                raise MMTalkerError(where, "uses the MLP regressor, whose outputs form no fixed linear span",
                                    "this check needs regressor_rank > 0")
            g, _ = model.encode_geometry(torch.from_numpy(template)[None])
            basis = model.regressor.prepare_points(model.regressor.point_part(model.vertex_features(g)))[0]  # (K, 3V)
            return (basis * model.motion_scale).numpy()
        if kind == "VOCA":
            scale = float(model.motion_scale)
            return np.concatenate([model.decoder.weight.numpy().T, model.decoder.bias.numpy()[None]]) * scale
    raise MMTalkerError(where, f"is a {kind} model, whose decoder is not linear", "this check reads MMTalker and VOCA")


def span_floor(model, sequences, dataset, eyes: np.ndarray, lips: np.ndarray, edge_frames: int, where: str = "checkpoint") -> dict:
    """The oracle's projection error on the eye region at clip edges and on the lips (sum and frame count)."""
    out = {"eyes_at_edges": [0.0, 0], "lips": [0.0, 0]}
    bases: dict[str, np.ndarray] = {}
    for seq in sequences:
        oracle = seq.oracle()
        if oracle is None:
            raise MMTalkerError(seq.key, "has no oracle motion", "this check needs the synthetic benchmark (oracle_npy/)")
        template = np.asarray(dataset.template(seq.subject), np.float32)
        if seq.subject not in bases:
            bases[seq.subject] = output_basis(model, template, where)
        basis = bases[seq.subject]
        motion = np.asarray(oracle, np.float64) - template  # (T, V, 3)
        T = len(motion)
        coef, *_ = np.linalg.lstsq(basis.T, motion.reshape(T, -1).T, rcond=None)
        fit = (basis.T @ coef).T.reshape(motion.shape)
        edge = np.zeros(T, bool)
        edge[:edge_frames] = edge[max(T - edge_frames, 0):] = True
        for key, region, frames in (("eyes_at_edges", eyes, edge), ("lips", lips, np.ones(T, bool))):
            d = ((fit[frames][:, region] - motion[frames][:, region]) ** 2).sum(-1).max(1)
            out[key][0] += float(d.sum())
            out[key][1] += int(len(d))
    return {k: s / max(n, 1) for k, (s, n) in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth", help="the synthetic benchmark (needs its oracle motion)")
    ap.add_argument("--split", default="val", help="split to look at (default: val)")
    ap.add_argument("--checkpoint", action="append", required=True, help="an MMTalker (low-rank) or VOCA checkpoint folder (repeatable)")
    ap.add_argument("--edge-frames", type=int, default=15, help="frames from a clip's start or end that count as its edges")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from mmtalker.models.registry import load_model

    try:
        ds, regions, seqs = open_split(args.data, args.split, ("lips", "eyes"))
        report, unit = report_unit(ds)
        print(f"{args.data} split {args.split}: {len(seqs)} sequences; the oracle projected onto each model's output span; "
              f"per frame the max over the region of the squared distance, {unit}")
        print("| checkpoint | eye region, first and last %d frames | lips, all frames |" % args.edge_frames)
        print("| --- | --- | --- |")
        for ckpt in args.checkpoint:
            model = load_model(ckpt)[0]
            r = span_floor(model, seqs, ds, regions.eyes, regions.lips, args.edge_frames, ckpt)
            print(f"| {ckpt} | {r['eyes_at_edges'] * report:.4f} | {r['lips'] * report:.4f} |", flush=True)
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
