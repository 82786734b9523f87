"""Does MMTalker's dependence on a new face's geometry cost it on unseen speakers?

Scores the `test_unseen_subjects` split twice per checkpoint: as usual (the geometry encoder sees each
speaker's own template), and with the geometry encoder fed the mean of the training templates while the
motion is still added to the speaker's own template. Similar scores mean the geometry path is not the cause.

    python benchmarks/unseen_speaker_geometry.py --data data/synth --checkpoint runs/x/seed0/best [--checkpoint ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset with a test_unseen_subjects split")
    parser.add_argument("--checkpoint", type=Path, action="append", required=True, help="MMTalker checkpoint folder")
    parser.add_argument("--split", default="test_unseen_subjects")
    args = parser.parse_args()

    from mmtalker.data.dataset import open_dataset
    from mmtalker.eval.protocol import regions_for, score
    from mmtalker.inference.api import MMTalker
    from mmtalker.models.mmtalker import UNSEEN_SUBJECT

    dataset = open_dataset(args.data)
    regions, seqs = regions_for(dataset), dataset.sequences(args.split)
    scale = float(dataset.manifest.units.get("report_scale", 1.0))
    print(f"{args.split}: {len(seqs)} sequences; LVE and EVE ×{1 / scale:.0e}")
    for ckpt in args.checkpoint:
        talker = MMTalker.from_pretrained(ckpt)
        engine = talker.engine
        mean_template = talker.model.subject_templates.mean(0).numpy()

        def own(seq):
            template = np.asarray(dataset.template(seq.subject), np.float32)
            return [talker.animate(seq.audio(), template=template, num_frames=seq.num_frames)]

        def mean_geometry(seq):
            face = engine.prepare(UNSEEN_SUBJECT, mean_template, rest=np.asarray(dataset.template(seq.subject), np.float32))
            return [engine.decode(face, engine.motion(face, engine.features(seq.audio(), seq.num_frames)))]

        a = score("own", seqs, own, dataset, regions).overall
        b = score("mean", seqs, mean_geometry, dataset, regions).overall
        print(f"{ckpt}: own template LVE {a['lve'] * scale:.4f} EVE {a['eve'] * scale:.4f} | "
              f"mean template for the geometry LVE {b['lve'] * scale:.4f} EVE {b['eve'] * scale:.4f}")


if __name__ == "__main__":
    main()
