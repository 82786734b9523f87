#!/usr/bin/env bash
# Train MMTalker, VOCA, FaceFormer and CodeTalker on the default synthetic benchmark with the same data,
# speech encoder, budget and seeds, score each on unseen sentences (split `test`) and unseen subjects
# (`test_unseen_subjects`), and write one table (Markdown + JSON) beside the runs, with the benchmark's oracle
# as the floor. With several seeds the table gives the mean ± standard deviation over seeds (the test splits
# are small and LVE is a maximum over the lips, so one seed can mislead), and the JSON every seed's scores.
#
#   benchmarks/compare_synth.sh                              # seed 0, the configs' budgets (15 min, 60 epochs)
#   SEEDS="0 1 2" PARALLEL=2 MINUTES=60 benchmarks/compare_synth.sh
#   MODELS="mmtalker voca" RUNS=runs/cmp benchmarks/compare_synth.sh
#
# Environment: DATA (dataset folder, made with `mmtalker data synth --preset default` when absent; default
# data/synth), RUNS (default runs/compare_synth; one folder per model and seed: RUNS/<model>/seed<N>),
# MINUTES (training budget per run; CodeTalker splits it between its two stages), SEEDS (default "0"),
# MODELS, PARALLEL (trainings at a time, default 1; each gets nproc/PARALLEL threads. Runs then share the
# CPU, so give MINUTES room: the summary says whether each run stopped at its epoch cap or on the clock),
# OVERWRITE=1 (retrain into existing run folders), DEVICE (cpu/cuda/auto), CONFIG_DIR (default configs;
# the configs are <model>_synth.yaml), TRAIN (the training command; default `python -m mmtalker train`).
# A run folder with a finished run (results.json) is kept and only scored again.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data/synth}
RUNS=${RUNS:-runs/compare_synth}
MINUTES=${MINUTES:-15}
SEEDS=${SEEDS:-0}
MODELS=${MODELS:-"mmtalker voca faceformer codetalker"}
PARALLEL=${PARALLEL:-1}
DEVICE=${DEVICE:-auto}
CONFIG_DIR=${CONFIG_DIR:-configs}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
TRAIN=${TRAIN:-"$PY -m mmtalker train"}
THREADS=$(( $(nproc) / PARALLEL )); [ "$THREADS" -ge 1 ] || THREADS=1
export HF_HUB_OFFLINE=1

if [ ! -f "$DATA/manifest.json" ]; then
  echo "== making the synthetic benchmark in $DATA"
  "$PY" -m mmtalker data synth --out "$DATA" --preset default --seed 0
fi
mkdir -p "$RUNS"

train_one() {  # model seed
  local out="$RUNS/$1/seed$2" flags=()
  [ -d "$out" ] && flags+=(--overwrite)
  echo "== training $1, seed $2, up to $MINUTES minutes, $THREADS thread(s), into $out (log: $out.log)"
  mkdir -p "$RUNS/$1"
  OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS MMTALKER_QUIET=1 \
    $TRAIN --config "$CONFIG_DIR/$1_synth.yaml" --data "$DATA" --out "$out" \
      --max-minutes "$MINUTES" --seed "$2" --device "$DEVICE" "${flags[@]}" > "$out.log" 2>&1 \
    || { echo "!! $1 seed $2 failed; see $out.log"; return 1; }
}

failed=0
for model in $MODELS; do
  for seed in $SEEDS; do
    if [ -f "$RUNS/$model/seed$seed/results.json" ] && [ "${OVERWRITE:-0}" != 1 ]; then
      echo "== $model seed $seed: finished run kept (OVERWRITE=1 retrains)"
      continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n || failed=1; done
    train_one "$model" "$seed" &
  done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
[ "$failed" = 0 ] || { echo "a training failed: see the logs above"; exit 1; }

echo "== scoring"
"$PY" - "$DATA" "$RUNS" "$SEEDS" "$MINUTES" $MODELS <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np

from mmtalker.data.dataset import open_dataset
from mmtalker.eval.protocol import regions_for, score
from mmtalker.train.peers import predictor

data, runs, seeds, minutes, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(), float(sys.argv[4]), sys.argv[5:]
dataset = open_dataset(data)
regions = regions_for(dataset)
units = dataset.manifest.units
scale = float(units.get("report_scale", 1.0))
length = units.get("length", "unit")
exp = f" ×{1 / scale:.0e}" if scale != 1 else ""
KEYS = ("lve", "eve", "fdd", "fdd_abs", "mve")


def cell(values, key):
    v = np.asarray(values) * (1.0 if key == "mve" else scale)
    fmt = "{:.3g}" if key == "mve" else "{:.4f}"
    return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")


report = [f"# mmtalker and peers on {dataset.manifest.name}", "",
          f"Same data, speech encoder, budget and seeds ({', '.join(seeds)}) for every model; runs in {runs}.",
          "With several seeds: mean ± standard deviation over seeds; **bold**: the lowest mean among the models.", ""]
out = {"seeds": seeds, "splits": {}}
for split, title in (("test", "unseen sentences (test)"), ("test_unseen_subjects", "unseen subjects (test_unseen_subjects)")):
    if split not in dataset.split_names:
        continue
    seqs = dataset.sequences(split)
    rows = {}
    for m in models:
        per_seed = [score(m, seqs, predictor(runs / m / f"seed{s}" / "best", dataset)[1], dataset, regions).overall for s in seeds]
        rows[m] = {k: [o[k] for o in per_seed] for k in KEYS}
    oracle = score("oracle", seqs, lambda seq: [] if seq.oracle() is None else [seq.oracle()], dataset, regions).overall
    best = {k: min(models, key=lambda m: np.mean(rows[m][k]) if k != "fdd" else abs(np.mean(rows[m][k]))) for k in KEYS}
    lines = [f"| model | LVE ({length}²{exp}) | EVE ({length}²{exp}) | FDD ({length}²{exp}) | |FDD| | MVE ({length}) |",
             "|" + " --- |" * 6]
    for m in models:
        cells = [(f"**{cell(rows[m][k], k)}**" if best[k] == m and len(models) > 1 else cell(rows[m][k], k)) for k in KEYS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("| oracle (floor) | " + " | ".join(cell([oracle[k]], k) if k in oracle else "–" for k in KEYS) + " |")
    report += [f"## {title}: {len(seqs)} sequences", "", *lines, ""]
    out["splits"][split] = {"models": rows, "oracle": {k: oracle[k] for k in KEYS if k in oracle}}
report.append(f"Training (epochs, steps, minutes of a {minutes:g}-minute budget; CodeTalker: its second stage; 'cap' = stopped "
              "at the config's epoch cap, 'clock' = by the time budget):")
for m in models:
    parts = []
    for s in seeds:
        folder = runs / m / f"seed{s}"
        r = json.loads((folder / "results.json").read_text())
        why = "cap" if r.get("train_minutes", minutes) < 0.98 * minutes else "clock"
        parts.append(f"seed {s}: {r.get('epochs')} ep, {r.get('steps')} steps" + (f", {r['train_minutes']} min" if "train_minutes" in r else "") + f" ({why})")
    report.append(f"- {m}: " + "; ".join(parts))
text = "\n".join(report) + "\n"
(runs / "compare_synth.md").write_text(text)
(runs / "compare_synth.json").write_text(json.dumps(out, indent=2) + "\n")
print(text)
print(f"wrote {runs / 'compare_synth.md'} and {runs / 'compare_synth.json'}")
EOF
