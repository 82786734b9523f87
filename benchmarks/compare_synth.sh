#!/usr/bin/env bash
# Train MMTalker, VOCA, FaceFormer and CodeTalker on the default synthetic benchmark with the same data,
# speech encoder, budget and seeds, score each on unseen sentences (split `test`) and unseen subjects
# (`test_unseen_subjects`), and write one table (Markdown + JSON) beside the runs, with the benchmark's oracle
# as the floor. With several seeds the table gives the mean ± standard deviation over seeds (the test splits
# are small and LVE is a maximum over the lips, so one seed can mislead), and the JSON every seed's scores;
# a paired bootstrap over the test sequences says how sure the ranking of the first model against each other
# one is (benchmarks/compare_summary.py, which can also be run alone on finished runs).
#
#   benchmarks/compare_synth.sh                              # seed 0, the configs' budgets (15 min, 60 epochs)
#   SEEDS="0 1 2" PARALLEL=2 MINUTES=120 WIDE=1 benchmarks/compare_synth.sh   # the README's table (docs/results.md, top; 14-60 min a run, by machine)
#   MODELS="mmtalker voca" RUNS=runs/cmp benchmarks/compare_synth.sh
#   SET="model.audio_finetune=0" RUNS=runs/cmp_frozen benchmarks/compare_synth.sh   # every model with Whisper frozen
#   SET="model.audio_init=runs/hearing/blocks.safetensors" RUNS=runs/cmp_taught benchmarks/compare_synth.sh
#       # every model's tuned Whisper blocks started from benchmarks/hearing_pretrain.py's file (docs/training.md);
#       # add optim.audio_lr=3e-6 to SET to tune them on at a tenth of the rate (MMTalker's best, results.md round 27)
#
# Environment: DATA (dataset folder, made with `mmtalker data synth --preset default` when absent; default
# data/synth), RUNS (default runs/compare_synth; one folder per model and seed: RUNS/<model>/seed<N>),
# MINUTES (training budget per run; CodeTalker splits it between its two stages), SEEDS (default "0"),
# MODELS, PARALLEL (trainings at a time, default 1; each gets nproc/PARALLEL threads. Runs then share the
# CPU, so give MINUTES room: the summary says whether each run stopped at its epoch cap or on the clock),
# OVERWRITE=1 (retrain into existing run folders), LONG=1 (then also score every run on 50 s clips of continuous
# speech: benchmarks/long_audio_accuracy.py, written to RUNS/long_speech.json; needs the synth extra), WIDE=1 (then
# also score every run on five times the test sentences: the `wide-test` preset of DATA's seed, made in
# WIDE_DATA, default ${DATA%/}_wide, when absent; table in RUNS/wide; needs the synth extra), DEVICE (cpu/cuda/auto), CONFIG_DIR (default configs;
# the configs are <model>_synth.yaml), SET (settings changed in every model's config, space-separated
# SECTION.KEY=VALUE, each passed as `mmtalker train --set`; no spaces inside a value: [1,2]), TRAIN (the training
# command; default `python -m mmtalker train`).
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
  local out="$RUNS/$1/seed$2" flags=() setting
  [ -d "$out" ] && flags+=(--overwrite)
  for setting in ${SET:-}; do flags+=(--set "$setting"); done
  echo "== training $1, seed $2${SET:+ with $SET}, up to $MINUTES minutes, $THREADS thread(s), into $out (log: $out.log)"
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
"$PY" benchmarks/compare_summary.py --data "$DATA" --runs "$RUNS" --seeds $SEEDS --minutes "$MINUTES" --models $MODELS

if [ "${WIDE:-0}" = 1 ]; then
  WIDE_DATA=${WIDE_DATA:-${DATA%/}_wide}
  if [ ! -f "$WIDE_DATA/manifest.json" ]; then
    seed=$("$PY" -c 'import json, sys
try: print(json.load(open(sys.argv[1]))["extra"]["generator"]["seed"])
except (KeyError, TypeError): sys.exit(f"{sys.argv[1]}: not made by `mmtalker data synth`; WIDE=1 needs the synthetic benchmark")' "$DATA/manifest.json")
    echo "== making the wide test sets (preset wide-test, seed $seed) in $WIDE_DATA"
    "$PY" -m mmtalker data synth --out "$WIDE_DATA" --preset wide-test --seed "$seed"
  fi
  echo "== scoring on five times the test sentences ($WIDE_DATA)"
  "$PY" benchmarks/compare_summary.py --data "$WIDE_DATA" --runs "$RUNS" --out "$RUNS/wide" --seeds $SEEDS \
    --minutes "$MINUTES" --models $MODELS
fi

if [ "${LONG:-0}" = 1 ]; then
  echo "== long speech (benchmarks/long_audio_accuracy.py)"
  ckpts=()
  for model in $MODELS; do for seed in $SEEDS; do ckpts+=(--checkpoint "$RUNS/$model/seed$seed/best"); done; done
  OMP_NUM_THREADS=$(nproc) MMTALKER_QUIET=1 "$PY" benchmarks/long_audio_accuracy.py --data "$DATA" "${ckpts[@]}" \
    --json "$RUNS/long_speech.json"
fi
