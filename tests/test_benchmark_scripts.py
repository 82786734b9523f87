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
