"""The speed and memory benchmarks run end to end on the shipped MMTalker config (random weights, a small face,
a second or two of speech), so that a change of config or API cannot leave them broken until someone needs a
figure. What they print is measured there, not asserted here (the CPU is shared in CI)."""

import os
import subprocess
import sys

import pytest

from conftest import FIXTURES, REPO

FIXTURE_AUDIO = FIXTURES / "audio"

CASES = {
    "bench_audio_encoder": (["--seconds", "1", "--repeats", "1", "--threads", "1"], False, "real time"),
    "bench_inference": (["--seconds", "2", "--repeats", "1", "--threads", "1", "--vertices", "800"], True, "peak memory"),
    "bench_long_audio": (["--minutes", "0.05", "--threads", "1", "--vertices", "800"], True, "peak RSS"),
    "bench_streaming": (["--seconds", "2", "--threads", "1", "--vertices", "800"], True, "frame latency"),
    "bench_window_read": (["--vertices", "500", "--frames", "30", "--window", "12", "--repeats", "2"], False, "speed x1.1"),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs(script):
    args, needs_speech, expect = CASES[script]
    if needs_speech and not any(FIXTURE_AUDIO.glob("*.wav")):
        pytest.skip(f"speech fixtures not found at {FIXTURE_AUDIO}")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "MMTALKER_QUIET": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert expect in done.stdout + done.stderr


def test_compare_synth_passes_set_to_every_training(tmp_path):
    """compare_synth.sh's SET reaches every model's `mmtalker train` as --set options (a stand-in TRAIN command
    records its arguments and fails, so nothing is trained or scored)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # present: the script then does not make the benchmark
    stub = tmp_path / "train.sh"
    stub.write_text('echo "ARGS $*"; exit 3\n')
    runs = tmp_path / "runs"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "compare_synth.sh")], capture_output=True, text=True,
                          timeout=120, cwd=REPO,
                          env={**os.environ, "DATA": str(data), "RUNS": str(runs), "MODELS": "mmtalker voca",
                               "TRAIN": f"bash {stub}", "SET": "model.audio_finetune=2 optim.audio_lr=1e-4"})
    assert done.returncode == 1 and "a training failed" in done.stdout
    for model in ("mmtalker", "voca"):
        args = (runs / model / "seed0.log").read_text()
        assert f"--config configs/{model}_synth.yaml" in args
        assert "--set model.audio_finetune=2 --set optim.audio_lr=1e-4" in args
