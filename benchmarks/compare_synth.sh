#!/usr/bin/env bash
# Train MMTalker, VOCA, FaceFormer and CodeTalker on the default synthetic benchmark with the same time
# budget and seed, score each on unseen sentences (split `test`) and unseen subjects (`test_unseen_subjects`),
# and write one table (Markdown + JSON) beside the runs, with the benchmark's oracle as the floor.
#
#   benchmarks/compare_synth.sh                      # 15 minutes per model (configs' budget), seed 0
#   MINUTES=5 SEED=1 RUNS=runs/cmp benchmarks/compare_synth.sh
#   MODELS="mmtalker voca" benchmarks/compare_synth.sh
#
# Environment: DATA (dataset folder, made with `mmtalker data synth --preset default` when absent; default
# data/synth), RUNS (default runs/compare_synth), MINUTES (training budget per model; CodeTalker splits it
# between its two stages), SEED, MODELS, OVERWRITE=1 (retrain into existing run folders), DEVICE (cpu/cuda/auto),
# TRAIN (the training command; default `python -m mmtalker train`; `python -m mmtalker.train.peers` takes the
# same options and also trains the peers where the train command does not dispatch them yet).
# An existing run folder with a finished run (results.json) is kept and only scored again.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data/synth}
RUNS=${RUNS:-runs/compare_synth}
MINUTES=${MINUTES:-15}
SEED=${SEED:-0}
MODELS=${MODELS:-"mmtalker voca faceformer codetalker"}
DEVICE=${DEVICE:-auto}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
TRAIN=${TRAIN:-"$PY -m mmtalker train"}
export HF_HUB_OFFLINE=1

if [ ! -f "$DATA/manifest.json" ]; then
  echo "== making the synthetic benchmark in $DATA"
  "$PY" -m mmtalker data synth --out "$DATA" --preset default --seed "$SEED"
fi
mkdir -p "$RUNS"

for model in $MODELS; do
  out="$RUNS/$model"
  if [ -f "$out/results.json" ] && [ "${OVERWRITE:-0}" != 1 ]; then
    echo "== $model: finished run in $out (OVERWRITE=1 retrains)"
    continue
  fi
  flags=()
  [ -d "$out" ] && flags+=(--overwrite)
  echo "== training $model for $MINUTES minutes (seed $SEED) into $out"
  $TRAIN --config "configs/${model}_synth.yaml" --data "$DATA" --out "$out" \
      --max-minutes "$MINUTES" --seed "$SEED" --device "$DEVICE" "${flags[@]}"
done

echo "== scoring"
"$PY" - "$DATA" "$RUNS" $MODELS <<'EOF'
import json
import sys
from pathlib import Path

from mmtalker.commands.evaluate import format_table
from mmtalker.data.dataset import open_dataset
from mmtalker.eval.protocol import regions_for, score
from mmtalker.train.peers import predictor

data, runs, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
dataset = open_dataset(data)
regions = regions_for(dataset)
sources = [(m, predictor(runs / m / "best", dataset)[1]) for m in models]
sources.append(("oracle (floor)", lambda seq: [] if seq.oracle() is None else [seq.oracle()]))
report = [f"# mmtalker and peers on {dataset.manifest.name}", "",
          f"Same data, speech encoder, budget and seed for every model; runs in {runs}.", ""]
out = {}
for split, title in (("test", "unseen sentences (test)"), ("test_unseen_subjects", "unseen subjects (test_unseen_subjects)")):
    if split not in dataset.split_names:
        continue
    seqs = dataset.sequences(split)
    results = [score(name, seqs, predict, dataset, regions) for name, predict in sources]
    report += [f"## {title}: {len(seqs)} sequences", "", format_table(results, dataset.manifest.units), ""]
    out[split] = {r.name: r.overall for r in results}
for m in models:
    res = runs / m / "results.json"
    if res.is_file():
        r = json.loads(res.read_text())
        report.append(f"- {m}: {r.get('epochs')} epochs, {r.get('steps')} steps" + (f", {r['train_minutes']} min" if "train_minutes" in r else ""))
text = "\n".join(report) + "\n"
(runs / "compare_synth.md").write_text(text)
(runs / "compare_synth.json").write_text(json.dumps(out, indent=2) + "\n")
print(text)
print(f"wrote {runs / 'compare_synth.md'} and {runs / 'compare_synth.json'}")
EOF
