"""Score the runs of benchmarks/compare_synth.sh and write the comparison table (Markdown + JSON).

    python benchmarks/compare_summary.py --data data/synth --runs runs/compare_synth --seeds 0 1 2 \\
        --minutes 15 --models mmtalker voca faceformer codetalker
    # the same runs on five times the test sentences (`mmtalker data synth --preset wide-test --out data/synth_wide`):
    python benchmarks/compare_summary.py --data data/synth_wide --runs runs/compare_synth --out runs/compare_wide ...

Per split and model: mean ± standard deviation over the seeds of LVE, EVE, FDD, |FDD| and MVE, beside the
benchmark's oracle floor, on the two test splits and, as a third set of sentences no model trained on, the
validation split (which the trainers also use to pick their checkpoints). The seed spread says nothing
about the held-out sentences' own sampling noise (the splits are small: 24, 8 and 24 sequences), so the
first model is also compared with each other one on the same sequences by a paired bootstrap: sequences are resampled with replacement (each sequence's score averaged
over the seeds first), and the table gives the difference of the frame-weighted LVE and EVE (first model
minus the other), its 95 % interval, and the share of resamples in which the first model is lower.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmtalker.data.dataset import open_dataset  # noqa: E402
from mmtalker.eval.protocol import regions_for, score  # noqa: E402
from mmtalker.inference.evaluate import checkpoint_predictor  # noqa: E402

KEYS = ("lve", "eve", "fdd", "fdd_abs", "mve")
SPLITS = (("test", "unseen sentences (test)"), ("test_unseen_subjects", "unseen subjects (test_unseen_subjects)"),
          ("val", "validation sentences (val: also unseen in training, but the trainers pick their checkpoint on 8–12 of its clips)"))


def paired_bootstrap(a: dict, b: dict, key: str, *, resamples: int = 10_000, seed: int = 0) -> dict:
    """Frame-weighted ``key`` of model a minus model b over resamples of their common sequences.

    ``a``/``b``: sequence key -> {key: value, "frames": n}. Returns the observed difference, the 2.5 and 97.5
    percentiles of the resampled differences, and the share of resamples in which a is lower.
    """
    keys = sorted(set(a) & set(b))
    w = np.array([a[k]["frames"] for k in keys], float)
    da = np.array([a[k][key] for k in keys], float)
    db = np.array([b[k][key] for k in keys], float)
    idx = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    ww = w[idx]
    diff = ((da[idx] - db[idx]) * ww).sum(1) / ww.sum(1)
    observed = float(((da - db) * w).sum() / w.sum())
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return {"diff": observed, "ci95": [float(lo), float(hi)], "p_lower": float((diff < 0).mean()), "sequences": len(keys)}


def seed_mean(per_seed: list[dict]) -> dict:
    """Per-sequence scores averaged over seeds (the sequences every seed scored)."""
    keys = set.intersection(*(set(p) for p in per_seed))
    return {k: {m: float(np.mean([p[k][m] for p in per_seed])) for m in per_seed[0][k]} for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--runs", required=True, type=Path, help="RUNS/<model>/seed<N>/best for every model and seed")
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--models", nargs="+", required=True, help="the first one is compared with each of the others")
    ap.add_argument("--minutes", type=float, required=True, help="the runs' time budget (to say cap or clock)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for compare_synth.md and .json (default: RUNS); give one to score finished runs on "
                    "another dataset, such as `mmtalker data synth --preset wide-test`, without replacing their table")
    args = ap.parse_args(argv)
    runs, seeds, models, minutes = args.runs, args.seeds, args.models, args.minutes
    out_dir = runs if args.out is None else args.out

    dataset = open_dataset(args.data)
    regions = regions_for(dataset)
    units = dataset.manifest.units
    scale = float(units.get("report_scale", 1.0))
    length = units.get("length", "unit")
    exp = f" ×{1 / scale:.0e}" if scale != 1 else ""

    def cell(values, key):
        v = np.asarray(values) * (1.0 if key == "mve" else scale)
        fmt = "{:.3g}" if key == "mve" else "{:.4f}"
        return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")

    report = [f"# mmtalker and peers on {dataset.manifest.name}", "",
              f"Same data, speech encoder, budget and seeds ({', '.join(seeds)}) for every model; runs in {runs}, "
              f"scored on {args.data}.",
              "With several seeds: mean ± standard deviation over seeds; **bold**: the lowest mean among the models.", ""]
    out = {"seeds": seeds, "splits": {}}
    for split, title in SPLITS:
        if split not in dataset.split_names:
            continue
        seqs = dataset.sequences(split)
        rows, per_seq = {}, {}
        for m in models:
            scored = [score(m, seqs, checkpoint_predictor(runs / m / f"seed{s}" / "best", dataset)[1], dataset, regions) for s in seeds]
            rows[m] = {k: [sc.overall[k] for sc in scored] for k in KEYS}
            per_seq[m] = seed_mean([sc.per_sequence for sc in scored])
        oracle = score("oracle", seqs, lambda seq: [] if seq.oracle() is None else [seq.oracle()], dataset, regions).overall
        best = {k: min(models, key=lambda m: np.mean(rows[m][k]) if k != "fdd" else abs(np.mean(rows[m][k]))) for k in KEYS}
        lines = [f"| model | LVE ({length}²{exp}) | EVE ({length}²{exp}) | FDD ({length}²{exp}) | |FDD| | MVE ({length}) |",
                 "|" + " --- |" * 6]
        for m in models:
            cells = [(f"**{cell(rows[m][k], k)}**" if best[k] == m and len(models) > 1 else cell(rows[m][k], k)) for k in KEYS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("| oracle (floor) | " + " | ".join(cell([oracle[k]], k) if k in oracle else "–" for k in KEYS) + " |")
        report += [f"## {title}: {len(seqs)} sequences", "", *lines, ""]
        paired = {}
        if len(models) > 1:
            first = models[0]
            report += [f"Paired bootstrap over the {len(per_seq[first])} sequences (scores averaged over seeds; "
                       f"{first} minus the other, {length}²{exp}; P = share of resamples where {first} is lower):", "",
                       "| versus | Δ LVE [95 % interval] | P(lower LVE) | Δ EVE [95 % interval] | P(lower EVE) |",
                       "|" + " --- |" * 5]
            for m in models[1:]:
                paired[m] = {k: paired_bootstrap(per_seq[first], per_seq[m], k) for k in ("lve", "eve")}
                cells = [f"{r['diff'] * scale:+.4f} [{r['ci95'][0] * scale:+.4f}, {r['ci95'][1] * scale:+.4f}] | {r['p_lower']:.2f}"
                         for r in (paired[m]["lve"], paired[m]["eve"])]
                report.append(f"| {m} | " + " | ".join(cells) + " |")
            report.append("")
        out["splits"][split] = {"models": rows, "oracle": {k: oracle[k] for k in KEYS if k in oracle}, "paired_bootstrap": paired,
                                "per_sequence": per_seq}
    report.append(f"Training (epochs, steps, minutes of a {minutes:g}-minute budget; CodeTalker: its second stage; 'cap' = "
                  "stopped at the config's epoch cap, 'clock' = by the time budget):")
    for m in models:
        parts = []
        for s in seeds:
            r = json.loads((runs / m / f"seed{s}" / "results.json").read_text())
            why = "cap" if r.get("train_minutes", minutes) < 0.98 * minutes else "clock"
            parts.append(f"seed {s}: {r.get('epochs')} ep, {r.get('steps')} steps"
                         + (f", {r['train_minutes']} min" if "train_minutes" in r else "") + f" ({why})")
        report.append(f"- {m}: " + "; ".join(parts))
    text = "\n".join(report) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare_synth.md").write_text(text)
    (out_dir / "compare_synth.json").write_text(json.dumps(out, indent=2) + "\n")
    print(text)
    print(f"wrote {out_dir / 'compare_synth.md'} and {out_dir / 'compare_synth.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
