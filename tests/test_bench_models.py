"""benchmarks/bench_models.py builds every model from its shipped config, with the widths the trainers give
(the configs read several Whisper blocks side by side, so a peer's input is wider than MMTalker's per-stream
width), and prints one row per model with ratios to MMTalker. Speed itself is measured there, not asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_models_runs_all_four_from_the_shipped_configs(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_models.py"), "--seconds", "1", "--repeats", "1",
         "--threads", "1", "--vertices", "800", "--json", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "MMTALKER_QUIET": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["kind"] for r in rows] == ["mmtalker", "voca", "faceformer", "codetalker"]
    for r in rows:
        assert r["frames"] == 30 and r["params"] > 0 and r["total_s"] >= r["model_s"] > 0
    assert len({r["vertices"] for r in rows}) == 1  # every model animates the same face
    table = done.stdout
    assert "| mmtalker |" in table and "| codetalker |" in table and "time ÷ MMTalker" in table
