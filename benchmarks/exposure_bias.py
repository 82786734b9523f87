"""How much does an autoregressive peer lean on the true previous frames? Teacher-forced vs free-running scores.

FaceFormer trained with teacher forcing (its setting before `model.own_inputs`) and CodeTalker's second stage
predict each frame from the previous *true* frames (CodeTalker: their quantised latents) during training and
from their *own* previous outputs at inference. This script scores both on a split: teacher forced (one step
ahead, the truth as the past: what teacher-forced training sees) and autoregressive (what inference and the
comparison use). A teacher-forced score far below the free-running one, and below what the audio alone
allows (the oracle floor), means the model copies its past instead of hearing the audio, and drifts when
the past is its own.

    python benchmarks/exposure_bias.py --data data/synth --split val --checkpoint runs/faceformer/best

Measured (docs/results.md, 2026-11-30, val, seed 0, ×1e-5 m²): FaceFormer trained teacher-forced, default
preset: teacher forced EVE 0.117, LVE 0.610; autoregressive EVE 0.495, LVE 2.328 (oracle floor EVE 0.337,
LVE 0.103). CodeTalker (teacher-forced stage 2): default preset EVE 0.197 / 0.394, LVE 0.734 / 1.849; large
preset EVE 0.086 / 0.383, LVE 0.347 / 1.171 (floor EVE 0.298).
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


def teacher_forced(model, kind: str, audio, subject, target):
    """One step ahead from the true past: (1, T, V, 3) motion units.

    FaceFormer: the true previous frames as inputs. CodeTalker: the true motion's quantised latents (its VQ-VAE's
    codes for the truth) as the previous tokens; each predicted latent is quantised and decoded as at inference.
    """
    if kind == "faceformer":
        return model(audio, subject, target)
    nearest = model.vqvae.quantizer.nearest
    feats = model.speech_to_latents(audio, subject, nearest(model.vqvae.encode(target)))
    return model.vqvae.decode(nearest(feats))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth", help="dataset folder")
    ap.add_argument("--split", default="val", help="split to score (default: val)")
    ap.add_argument("--checkpoint", required=True, help="a FaceFormer or CodeTalker checkpoint folder")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from mmtalker.audio.encoders import features_at_fps, trained_model_encoder
    from mmtalker.models.registry import checkpoint_kind, load_model

    try:
        ds, regions, seqs = open_split(args.data, args.split, ("lips", "eyes"))
        kind = checkpoint_kind(Path(args.checkpoint))
        if kind not in ("faceformer", "codetalker"):
            raise MMTalkerError(args.checkpoint, f"is a {kind} checkpoint",
                                "this check needs an autoregressive peer: faceformer or codetalker")
        model, config, _ = load_model(args.checkpoint, expect=kind)
        encoder = trained_model_encoder(model).eval()  # with its fine-tuned blocks, if it has any
        scale = float(model.motion_scale)
        sums = {k: np.zeros(3) for k in ("teacher forced", "autoregressive")}  # eye sum, lip sum, frames
        for seq in seqs:
            template = np.asarray(ds.template(seq.subject), np.float32)
            truth = np.asarray(seq.vertices(), np.float32)
            with torch.no_grad():
                feats = encoder(torch.from_numpy(np.asarray(seq.audio(), np.float32))[None])
                audio = features_at_fps(feats, encoder.rate, config.fps, len(truth))
                subject = torch.tensor([model.subject_index(seq.subject)])
                target = torch.from_numpy((truth - template) / scale)[None]
                preds = {"teacher forced": teacher_forced(model, kind, audio, subject, target)[0].numpy(),
                         "autoregressive": model.motion(audio, subject)[0].numpy()}
            for key, pred in preds.items():
                verts = pred * scale + template
                for i, region in enumerate((regions.eyes, regions.lips)):
                    sums[key][i] += ((verts[:, region] - truth[:, region]) ** 2).sum(-1).max(1).sum()
                sums[key][2] += len(truth)
        report, unit = report_unit(ds)
        print(f"{args.checkpoint} on {args.data} split {args.split} ({len(seqs)} sequences), {unit}")
        print("| decoding | EVE | LVE |")
        print("| --- | --- | --- |")
        for key, (eye, lip, frames) in sums.items():
            print(f"| {key} | {eye / frames * report:.4f} | {lip / frames * report:.4f} |")
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
