"""How close to the oracle floor can a model get that is *told* the phones? A ceiling for the benchmark.

The synthetic benchmark's oracle floor is the generator's own expected motion given the exact phone timings.
A model trained from speech has to (1) recognise the phones and their timing from audio and (2) learn how
phones move the face from the training sentences. This script removes (1): a small network gets the
generator's exact phone timings (per frame the phones' shares of its span, their stress, where the current
phone's centre lies and how long it is, and the subject) and learns
(2) from the same training split the models see. Its test LVE is what learning from these 32 sentences per
speaker gives even with perfect phone recognition; the gap from it to the floor is not the speech encoder's.

    python benchmarks/phonetic_ceiling.py --data data/synth      # a few minutes on 2 CPU cores
    python benchmarks/phonetic_ceiling.py --data data/synth --input speech     # the same network hearing speech

Measured on the default benchmark: docs/results.md ("How far the floor is").

Network: per frame [phone shares, stress share, centre offset, length, log length, subject one-hot] → 1×1 conv → 3 residual dilated temporal
convolutions (kernel 5, dilations 1, 2, 4: ±14 frames, as MMTalker's audio head) → 64 PCA coefficients of the
displacement (PCA of the training frames), dropout 0.2 after each convolution, trained with AdamW (cosine decay
from 2e-3 to 5 %) on the squared error of the displacement the coefficients make (each component by its size).
Unseen subjects get the mean subject vector. Scores use mmtalker's metrics (LVE in the manifest's report units).

What hearing costs (`--input`, the fifteenth round): the same network and training fed pretrained speech features
(`speech`: `--encoder`, by default `whisper-tiny.en@3+1+2`, every shipped config's encoder then; they now read
`@3+1+2+4`), only the phones' shares (`shares`), or those shares as a second network
of the same kind hears them from the speech (`heard`); `--phone-bottleneck` trains speech → phone posteriors →
motion as one. The other options (`--bottleneck`, `--input-dropout`, `--variants`, `--clip-norm`,
`--phone-aux`) are the trials of that round, kept so that its table can be measured again. `--units` (the
sixteenth round) feeds the speech as its soft assignment to k-means centres (discrete units, no alignments).

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

from mmtalker.audio.augment import AugmentConfig  # noqa: E402
from mmtalker.audio.encoders import build_audio_encoder  # noqa: E402
from mmtalker.data.dataset import open_dataset  # noqa: E402
from mmtalker.errors import MMTalkerError  # noqa: E402
from mmtalker.eval.metrics import lve  # noqa: E402
from mmtalker.paths import cache_dir  # noqa: E402
from mmtalker.progress import progress  # noqa: E402
from mmtalker.synth.visemes import PAUSE, normalize  # noqa: E402
from mmtalker.train.data import FeatureCache, _variant_features, frames_at  # noqa: E402
from mmtalker.train.loop import lr_factor  # noqa: E402


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
    def __init__(self, inputs: int, outputs: int, width: int = 128, dropout: float = 0.0, bottleneck: int = 0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.inp = nn.Conv1d(inputs, width, 1)
        if bottleneck:  # a narrow linear map first: the input's information squeezed to `bottleneck` channels
            self.inp = nn.Sequential(nn.Conv1d(inputs, bottleneck, 1), nn.Conv1d(bottleneck, width, 1))
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2 * d, dilation=d) for d in (1, 2, 4))
        self.out = nn.Conv1d(width, outputs, 1)

    def forward(self, x, hidden=False):  # (B, C, T) -> (B, K, T) [and the last hidden state (B, width, T)]
        h = self.inp(x)
        for conv in self.convs:
            h = h + self.drop(nn.functional.gelu(conv(h)))
        return (self.out(h), h) if hidden else self.out(h)


class Bottleneck(nn.Module):
    """Speech -> phone posteriors -> motion, trained as one (--phone-bottleneck): the motion network sees only
    the posteriors a first network gives (and the subject), so what reaches it is what names the phones."""

    def __init__(self, speech: int, phones: int, subjects: int, outputs: int, width: int, dropout: float):
        super().__init__()
        self.speech = speech
        self.hear = Net(speech, phones, width, dropout)
        self.move = Net(phones + subjects, outputs, width, dropout)

    def forward(self, x, hidden=False):  # x (B, speech + subjects, T)
        logits = self.hear(x[:, : self.speech])
        out = self.move(torch.cat([logits.softmax(1), x[:, self.speech:]], 1))
        return (out, logits) if hidden else out


def kmeans(z: torch.Tensor, k: int, seed: int, iters: int = 30) -> torch.Tensor:
    """Lloyd's k-means of the rows of ``z`` (N, C): (k, C) centres, started from k distinct random rows; a
    cluster left empty restarts at a random row."""
    g = torch.Generator().manual_seed(seed)
    centres = z[torch.randperm(len(z), generator=g)[:k]].clone()
    for _ in range(iters):
        nearest = torch.cdist(z, centres).argmin(1)
        for j in range(k):
            members = nearest == j
            centres[j] = z[members].mean(0) if members.any() else z[torch.randint(len(z), (1,), generator=g)[0]]
    return centres


def unit_posteriors(z: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, k): softmax over the centres of −(squared distance) / temperature for each row of ``z``."""
    return (-(torch.cdist(z, centres) ** 2) / temperature).softmax(1)


def fit(net: nn.Module, items: list, loss_of, epochs: int, rng: np.random.Generator, constant: bool = False) -> None:
    """AdamW (2e-3, weight decay 0.01) over ``items`` in a random order each epoch, one item per step, the rate
    constant or decayed as the models' trainer decays it (cosine to 5 %, no warmup); ``loss_of(item)`` -> loss."""
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=0.01)
    steps = epochs * len(items)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 if constant else lr_factor(k / steps, k, 0, 0.05))
    for _ in range(epochs):
        net.train()
        for i in rng.permutation(len(items)):
            loss = loss_of(items[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()


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
    ap.add_argument("--input", choices=["phones", "speech", "shares", "heard"], default="phones",
                    help="what the network is told per frame: the generator's exact phones (default); the speech "
                         "encoder's features of the clip's audio (speech; --encoder), standardised per channel: the "
                         "same network and training, so the gap between the two is what hearing the phones costs; "
                         "only the phones' shares of each frame (shares: no stress, centre or length); or, trained as "
                         "`shares`, scored on the shares a second network of the same kind *hears* from the speech "
                         "features (heard: trained to name each frame's phones on the training clips)")
    ap.add_argument("--encoder", default="whisper-tiny.en@3+1+2",
                    help="speech encoder for --input speech, pretrained and frozen (default whisper-tiny.en@3+1+2: the "
                         "shipped configs' when docs/results.md's figures were measured; they now read "
                         "whisper-tiny.en@3+1+2+4: pass it to match)")
    ap.add_argument("--variants", type=int, default=0,
                    help="--input speech or heard: augmented copies of each training clip beside the clean one (the "
                         "trainer's augmentation, its default ranges; default 0); `heard` trains its phone namer on them")
    ap.add_argument("--input-dropout", type=float, default=0.0,
                    help="share of input channels zeroed per training clip (the models' feature_dropout; default 0)")
    ap.add_argument("--phone-aux", type=float, default=0.0,
                    help="--input speech: weight of an auxiliary loss naming each frame's phones (cross-entropy "
                         "against the phones' shares of the frame) from the network's last hidden state (default 0)")
    ap.add_argument("--bottleneck", type=int, default=0,
                    help="the input first mapped linearly to this many channels (0: none, the default)")
    ap.add_argument("--clip-norm", action="store_true",
                    help="--input speech: standardise each feature channel over the clip itself rather than over "
                         "the training clips (removes what is constant over a clip: much of the voice)")
    ap.add_argument("--cache-dir", default=None,
                    help="where speech features are cached (default: $MMTALKER_HOME/features, shared with the trainer)")
    ap.add_argument("--phone-bottleneck", action="store_true",
                    help="--input speech: one network names each frame's phones from the speech, a second turns "
                         "their posteriors (and the subject) into motion, trained together; --phone-aux weighs the "
                         "naming loss (required)")
    ap.add_argument("--units", type=int, default=0,
                    help="--input speech: the network sees, instead of the features, their soft assignment to this "
                         "many k-means centres fitted on the training clips' frames (discrete speech units: a "
                         "bottleneck that needs no alignments; 0: off, the default)")
    ap.add_argument("--unit-temperature", type=float, default=1.0,
                    help="--units: the softmax's temperature, in units of the frames' mean squared distance to "
                         "their nearest centre (default 1; larger is softer)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.phone_bottleneck and (args.input != "speech" or not args.phone_aux):
        print("error: --phone-bottleneck needs --input speech and a --phone-aux weight", file=sys.stderr)
        return 2
    if args.units and (args.input != "speech" or args.units < 2 or args.unit_temperature <= 0):
        print("error: --units needs --input speech, at least 2 units and a positive --unit-temperature", file=sys.stderr)
        return 2
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

        if args.input in ("speech", "heard"):
            encoder = build_audio_encoder(args.encoder)
            cache = FeatureCache(Path(args.cache_dir) if args.cache_dir else cache_dir() / "features")
            feats = {}

            aug = AugmentConfig()

            def speech(seq, variant=0):
                if (seq.key, variant) not in feats:
                    v = _variant_features(seq, encoder, args.encoder, fps, variant, aug, cache)
                    feats[seq.key, variant] = (v.features.astype(np.float32), v.stretch)
                return feats[seq.key, variant][0]

            stacked = np.concatenate([speech(s) for s in progress(train, desc="speech features", unit="clip")])
            mu, sd = stacked.mean(0), stacked.std(0) + 1e-3
            if args.units:  # discrete speech units: k-means of the standardised training frames
                if args.units > len(stacked):
                    raise MMTalkerError(args.data, f"has {len(stacked)} training frames, fewer than --units {args.units}")
                z = torch.from_numpy((stacked - mu) / sd)
                centres = kmeans(z, args.units, args.seed)
                temperature = float((torch.cdist(z, centres) ** 2).min(1).values.mean()) * args.unit_temperature
                del z
            del stacked

        heard = None  # the phone-naming network, once trained (--input heard)
        scored = ["train", *[n for n in ds.split_names if n.startswith("test")]]

        def shares_at(seq, variant=0):
            """(T', phones) each frame's phones' shares, summing to 1, at the frames of ``variant`` (stretched)."""
            shares = phone_track(seq, vocab, fps)[:, : len(vocab)]
            if variant:  # a stretched variant's frame t shows frame t / stretch
                shares = frames_at(shares, np.arange(len(speech(seq, variant))) / feats[seq.key, variant][1])
            return shares / np.maximum(shares.sum(1, keepdims=True), 1e-6)

        def inputs(seq, variant=0):
            if args.input == "phones":
                track = phone_track(seq, vocab, fps)
            elif args.input == "speech" and args.clip_norm:  # each channel standardised over the clip itself
                f = speech(seq, variant)
                track = (f - f.mean(0)) / (f.std(0) + 1e-3)
            elif args.input == "speech" and args.units:
                track = unit_posteriors(torch.from_numpy((speech(seq, variant) - mu) / sd), centres, temperature).numpy()
            elif args.input == "speech":
                track = (speech(seq, variant) - mu) / sd
            elif heard is not None:
                with torch.no_grad():
                    track = heard(torch.from_numpy(((speech(seq) - mu) / sd).T)[None])[0].softmax(0).numpy().T
            else:
                track = phone_track(seq, vocab, fps)[:, : len(vocab)]
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
        data = []
        for s in train:
            coef = (((displacement(s) - mean) @ basis.T) / scale).astype(np.float32)  # (T, K)
            for v in range(1 + (args.variants if args.input == "speech" else 0)):
                x = inputs(s, v)
                if v:  # a stretched variant's frame t shows the motion at frame t / stretch
                    coef_v = frames_at(coef, np.arange(len(x)) / feats[s.key, v][1])
                else:
                    coef_v = coef
                # each frame's phones, the naming loss's target (the only use of alignments here)
                shares = shares_at(s, v) if args.phone_aux else np.zeros((len(x), 0), np.float32)
                data.append((torch.from_numpy(x.T.copy()), torch.from_numpy(np.ascontiguousarray(coef_v.T)),
                             torch.from_numpy(np.ascontiguousarray(shares.T))))
        # --input heard: (speech features, phone shares) of every training clip and its augmented copies (--variants)
        pairs = [(torch.from_numpy(((speech(s, v) - mu) / sd).T.copy()), torch.from_numpy(np.ascontiguousarray(shares_at(s, v).T)))
                 for s in train for v in range(1 + args.variants)] if args.input == "heard" else []
    except MMTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if args.input == "heard":  # a network of the same kind learns to name each frame's phones from the speech
        heard = Net(len(mu), len(vocab), args.width, args.dropout)
        fit(heard, pairs, lambda item: -(item[1] * heard(item[0][None])[0].log_softmax(0)).sum(0).mean(), args.epochs, rng)
        for split in scored:
            hit = total = 0
            for seq in ds.sequences(split):
                truth = phone_track(seq, vocab, fps)[:, : len(vocab)].argmax(1)
                hit += int((inputs(seq)[:, : len(vocab)].argmax(1) == truth).sum())
                total += len(truth)
            print(f"phones heard on {split}: {hit / total:.1%} of frames (the frame's largest share)")

    if args.phone_bottleneck:
        net = Bottleneck(len(mu), len(vocab), len(subjects), args.components, args.width, args.dropout)
    else:
        net = Net(data[0][0].shape[0], args.components, args.width, args.dropout, args.bottleneck)
    if args.phone_aux and not args.phone_bottleneck:
        net.phones = nn.Conv1d(args.width, len(vocab), 1)
    # whitened: every coefficient counts alike; displacement: as its share of the motion (the squared vertex error)
    weight = torch.ones(args.components, 1) if args.loss == "whitened" else torch.from_numpy(scale / scale[0])[:, None]

    def motion_loss(item):
        x, y, shares = item
        if args.input_dropout:
            x = x * (torch.rand(x.shape[0], 1) >= args.input_dropout) / (1 - args.input_dropout)
        out, h = net(x[None], hidden=True)
        loss = (((out[0] - y) * weight) ** 2).mean()
        if args.phone_aux:
            logits = h if args.phone_bottleneck else net.phones(h)
            loss = loss - args.phone_aux * (shares * logits[0].log_softmax(0)).sum(0).mean()
        return loss

    fit(net, data, motion_loss, args.epochs, rng, constant=args.schedule == "constant")

    units = ds.manifest.units or {}
    report = float(units.get("report_scale", 1.0))
    floor = (getattr(ds.manifest, "extra", None) or {}).get("oracle_floor", {})
    as_units = f", as {args.units} units" if args.units else ""
    told = {"phones": "phone-informed", "speech": f"speech-fed ({args.encoder}{as_units})", "shares": "phone-share-informed",
            "heard": f"phone-share-informed, scored on phones heard from {args.encoder},"}[args.input]
    print(f"{told} network, {len(train)} training clips, {args.epochs} epochs ({args.loss} loss, {args.schedule} "
          f"rate, dropout {args.dropout:g}), seed {args.seed} "
          f"({time.time() - t0:.0f} s); LVE ×{1 / report:g} {units.get('length', '')}²")
    print("| split | LVE | oracle floor LVE | ÷ floor |")
    print("| --- | --- | --- | --- |")
    for split in scored:
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
