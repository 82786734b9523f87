#!/usr/bin/env bash
# The GPU checks and figures in one go, for a machine with a CUDA device:
#   1. tests/test_gpu.py: training under bf16 autocast learns; GPU inference agrees with the CPU;
#   2. training throughput (sequences/s, bf16) at batch 8 and 32 (benchmarks/bench_train_throughput.py);
#   3. inference speed and peak GPU memory of MMTalker, VOCA, FaceFormer and CodeTalker on 10 s of speech
#      (benchmarks/bench_models.py), as ratios to MMTalker.
#
#   bash benchmarks/gpu_check.sh            (PYTHON=... to choose the interpreter; default: .venv's, else python3)
#
# Runs from the source tree (src/ on PYTHONPATH), so it also works where mmtalker is not pip-installed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
[ -z "$PY" ] && { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
export HF_HUB_OFFLINE=1 MMTALKER_QUIET=1 PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__)" || exit 1
status=0
echo "== tests/test_gpu.py"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py || status=1
for batch in 8 32; do
    echo "== training throughput, batch $batch"
    "$PY" benchmarks/bench_train_throughput.py --device cuda --batch-size "$batch" --epochs 3 || status=1
done
echo "== inference, four models, 10 s of speech"
"$PY" benchmarks/bench_models.py --device cuda --seconds 10 --repeats 5 || status=1
exit $status
