"""How close to the oracle floor can a model get that is *told* the phones? A ceiling for the benchmark.

The synthetic benchmark's oracle floor is the generator's own expected motion given the exact phone timings.
A model trained from speech has to (1) recognise the phones and their timing from audio and (2) learn how
phones move the face from the training sentences. This script removes (1): a small network gets the
generator's exact phone timings (per frame the phones' shares of its span, their stress, where the current
phone's centre lies and how long it is, and the subject) and learns
(2) from the same training split the models see. Its test LVE is what learning from these 32 sentences per
speaker gives even with perfect phone recognition; the gap from it to the floor is not the speech encoder's.

    python benchmarks/phonetic_ceiling.py --data data/synth      # a few minutes on 2 CPU cores

Measured on the default benchmark: docs/results.md ("How far the floor is").

Network: per frame [phone shares, stress share, centre offset, length, log length, subject one-hot] → 1×1 conv → 3 residual dilated temporal
convolutions (kernel 5, dilations 1, 2, 4: ±14 frames, as MMTalker's audio head) → 64 PCA coefficients of the
displacement (PCA of the training frames), dropout 0.2 after each convolution, trained with AdamW (cosine decay
from 2e-3 to 5 %) on the squared error of the displacement the coefficients make (each component by its size).
Unseen subjects get the mean subject vector. Scores use mmtalker's metrics (LVE in the manifest's report units).

Until the fourteenth round it trained at a constant rate, without dropout, on the *whitened* coefficients (every
component alike, the noise-sized ones too), and fitted its own training sentences only to 3x their floor: its 4x
on the test sentences was its training, not the data (`--loss whitened --schedule constant --dropout 0` gives
those figures again).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmtalker.data.dataset import open_dataset  # noqa: E402
from mmtalker.errors import MMTalkerError  # noqa: E402
from mmtalker.eval.metrics import lve  # noqa: E402
from mmtalker.synth.visemes import PAUSE, normalize  # noqa: E402


def phone_track(seq, vocab: dict[str, int], fps: float) -> np.ndarray:
    """(T, len(vocab) + 4) per frame: each phone's share of the frame's span [t − ½, t + ½] / fps (so a phone
    shorter than a frame still shows), the stressed phones' share, and for the phone at the frame's time
    the offset of its centre from the frame, its length (both in frames, the length / 5) and the log length."""
    phones = seq.alignment()
    if not phones:
        raise MMTalkerError(seq.key, "has no phone alignment", "this check needs the synthetic benchmark's alignments/")
    T = seq.num_frames
    out = np.zeros((T, len(vocab) + 4), np.float32)
    starts = np.array([p["start"] for p in phones])
    ends = np.array([p["end"] for p in phones])
    ids = np.array([vocab.get(_key(p["symbol"]), vocab["<unk>"]) for p in phones])
    stressed = np.array([float(p.get("stress", 0) > 0) for p in phones], np.float32)
    n = len(vocab)
    for t in range(T):
        overlap = (np.minimum(ends, (t + 0.5) / fps) - np.maximum(starts, (t - 0.5) / fps)).clip(min=0) * fps
        np.add.at(out[t], ids, overlap)
        out[t, n] = float((overlap * stressed).sum())
        i = max(0, int(np.searchsorted(starts, t / fps, side="right")) - 1)
        length = (ends[i] - starts[i]) * fps
        out[t, n + 1] = (starts[i] + ends[i]) / 2 * fps - t
        out[t, n + 2] = length / 5
        out[t, n + 3] = np.log(length + 1e-3)
    return out


def _key(symbol: str) -> str:
    return PAUSE if symbol == PAUSE else normalize(symbol)


class Net(nn.Module):
    def __init__(self, inputs: int, outputs: int, width: int = 128, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.inp = nn.Conv1d(inputs, width, 1)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2 * d, dilation=d) for d in (1, 2, 4))
        self.out = nn.Conv1d(width, outputs, 1)

    def forward(self, x):  # (B, C, T) -> (B, K, T)
        h = self.inp(x)
        for conv in self.convs:
            h = h + self.drop(nn.functional.gelu(conv(h)))
        return self.out(h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth", help="the synthetic benchmark (made by `mmtalker data synth`)")
    ap.add_argument("--epochs", type=int, default=60, help="passes over the training clips (default 60, as the models)")
    ap.add_argument("--components", type=int, default=64, help="PCA components of the displacement (default 64)")
    ap.add_argument("--pca-frames", type=int, default=8000,
                    help="at most this many training frames fit the PCA (every 3rd, or sparser; default 8000)")
    ap.add_argument("--width", type=int, default=128, help="channels of the temporal convolutions (default 128)")
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                    help="learning rate: cosine decay from 2e-3 to 5 %% (default) or constant 2e-3 (before the fourteenth round)")
    ap.add_argument("--loss", choices=["displacement", "whitened"], default="displacement",
                    help="squared error of the displacement the PCA coefficients make (components by their size; "
                         "default) or of the whitened coefficients (every component alike; the figures before the "
                         "fourteenth round)")
    ap.add_argument("--dropout", type=float, default=0.2, help="dropout after each temporal convolution (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    try:
        ds = open_dataset(args.data)
        train = ds.sequences("train")
        lips = ds.region("lips")
        fps = ds.manifest.fps
        vocab = {"<unk>": 0}
        for seq in train:
            for p in seq.alignment() or []:
                vocab.setdefault(_key(p["symbol"]), len(vocab))
        subjects = sorted({s.subject for s in train})

        def inputs(seq):
            track = phone_track(seq, vocab, fps)
            who = np.full(len(subjects), 1.0 / len(subjects), np.float32)
            if seq.subject in subjects:
                who[:] = 0.0
                who[subjects.index(seq.subject)] = 1.0
            return np.concatenate([track, np.repeat(who[None], len(track), 0)], 1)

        def displacement(seq):
            return (np.asarray(seq.vertices(), np.float32) - ds.template(seq.subject)).reshape(seq.num_frames, -1)

        # the PCA is fitted on every `stride`-th training frame (3, or more so that at most --pca-frames rows
        # go into the SVD: on the large preset all frames at stride 3 took more than 19 GB), the mean on all
        total = sum(s.num_frames for s in train)
        stride = max(3, math.ceil(total / args.pca_frames))
        sums, rows, seen = 0.0, [], 0
        for s in train:
            d = displacement(s)
            sums = sums + d.sum(0, dtype=np.float64)
            rows.append(d[(-seen) % stride:: stride])  # global frame indices 0, stride, 2·stride, …
            seen += len(d)
        mean = (sums / total).astype(np.float32)
        sample = np.concatenate(rows) - mean
        del rows
        _, sv, vt = np.linalg.svd(sample, full_matrices=False)
        basis = vt[: args.components].astype(np.float32)
        scale = (sv[: args.components] / np.sqrt(len(sample))).astype(np.float32)
        del sample
        data = [(torch.from_numpy(inputs(s).T), torch.from_numpy((((displacement(s) - mean) @ basis.T) / scale).T.astype(np.float32)))
                for s in train]
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    net = Net(data[0][0].shape[0], args.components, args.width, args.dropout)
    # whitened: every coefficient counts alike; displacement: as its share of the motion (the squared vertex error)
    weight = torch.ones(args.components, 1) if args.loss == "whitened" else torch.from_numpy(scale / scale[0])[:, None]
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=0.01)
    steps = args.epochs * len(data)
    sched = torch.optim.lr_scheduler.LambdaLR(  # constant, or cosine to 5 % (as the models' trainer)
        opt, lambda k: 1.0 if args.schedule == "constant" else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k / steps, 1.0))))
    for epoch in range(args.epochs):
        net.train()
        for i in rng.permutation(len(data)):
            x, y = data[i]
            loss = (((net(x[None])[0] - y) * weight) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()

    units = ds.manifest.units or {}
    report = float(units.get("report_scale", 1.0))
    floor = (getattr(ds.manifest, "extra", None) or {}).get("oracle_floor", {})
    print(f"phone-informed network, {len(train)} training clips, {args.epochs} epochs ({args.loss} loss, {args.schedule} "
          f"rate, dropout {args.dropout:g}), seed {args.seed} "
          f"({time.time() - t0:.0f} s); LVE ×{1 / report:g} {units.get('length', '')}²")
    print("| split | LVE | oracle floor LVE | ÷ floor |")
    print("| --- | --- | --- | --- |")
    for split in ["train", *[n for n in ds.split_names if n.startswith("test")]]:
        num = den = 0.0
        for seq in ds.sequences(split):
            with torch.no_grad():
                coef = net(torch.from_numpy(inputs(seq).T)[None])[0].numpy().T * scale
            pred = (coef @ basis + mean).reshape(seq.num_frames, -1, 3)
            truth = displacement(seq).reshape(seq.num_frames, -1, 3)
            num += lve(pred, truth, lips) * seq.num_frames
            den += seq.num_frames
        f = floor.get(split, {}).get("lve")
        floor_cells = f"{f * report:.3f} | {num / den / f:.1f}×" if f else "– | –"
        print(f"| {split} | {num / den * report:.3f} | {floor_cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
