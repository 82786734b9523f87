"""A 2-process data-parallel run killed with SIGKILL and continued with ``--resume`` ends where an
uninterrupted 2-process run ends.

Dropout is on, so each rank's own torch RNG matters: rank 0's is in the training state, the other
ranks' are saved beside it (``rng_rank<r>_epoch<e>.safetensors``) before rank 0 writes the state of
that epoch. Batches and UV points come from generators that all ranks share and rank 0 saves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from conftest import epochs_done, training_env
from fake_talk import write_fake_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EPOCHS = 8
KILL_AFTER_EPOCH = 2
TINY = {
    "data": {"augment_variants": 1, "window_frames": 16, "val_max_clips": 2},
    "model": {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 16, "gcn_layers": 1, "num_region_tokens": 4, "heads": 2,
              "audio_layers": 1, "regressor_hidden": 16, "regressor_layers": [8], "dropout": 0.2},
    "sampler": {"points": 32},
    "optim": {"epochs": EPOCHS, "max_minutes": None, "batch_size": 2, "lr": 0.01, "warmup_steps": 2,
              "select_metric": "loss", "device": "cpu", "deterministic": True, "seed": 11},
}


def _cmd(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    return [*launcher, "-m", "mmtalker", "train", "--config", str(config), "--data", str(data), "--out", str(out), *extra]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_resume")
    data = write_fake_dataset(root / "data", clips_per_subject=5)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"base": str(CONFIGS / "mmtalker_synth.yaml"),
                                      **TINY, "data": {**TINY["data"], "cache_dir": str(root / "cache")}}))
    whole, killed = root / "whole", root / "killed"
    done = subprocess.run(_cmd(config, data, whole), env=training_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(_cmd(config, data, killed), env=training_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while epochs_done(killed) < KILL_AFTER_EPOCH and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # the workers (torchrun starts each in a session of its own) and the launcher, as a crashed node
    workers = _children(proc.pid)
    for pid in [*workers, proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and len(workers) == 2, "the run ended before it could be killed"
    _wait_gone(workers)
    stopped_at = json.loads((killed / "last" / "training_state.json").read_text())["counters"]["epoch"]
    assert KILL_AFTER_EPOCH <= stopped_at < EPOCHS and not (killed / "results.json").exists()
    assert (killed / "last" / f"rng_rank1_epoch{stopped_at}.safetensors").is_file()

    resumed = subprocess.run(_cmd(config, data, killed, "--resume"), env=training_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return whole, killed


def test_resumed_data_parallel_run_ends_with_the_same_weights(runs):
    whole, killed = runs
    a = load_file(str(whole / "last" / "model.safetensors"))
    b = load_file(str(killed / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)


def test_resumed_data_parallel_run_has_the_same_history(runs):
    whole, killed = runs
    ha = [json.loads(x) for x in (whole / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (killed / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in hb] == list(range(1, EPOCHS + 1))
    for ra, rb in zip(ha, hb):
        assert rb["train"]["loss"] == pytest.approx(ra["train"]["loss"], rel=1e-6), ra["epoch"]


def test_old_rank_rng_files_are_pruned(runs):
    """Only the last two epochs' files of a rank are kept (the state's epoch and possibly the next)."""
    _, killed = runs
    kept = sorted(p.name for p in (killed / "last").glob("rng_rank1_epoch*.safetensors"))
    assert kept == [f"rng_rank1_epoch{EPOCHS - 1}.safetensors", f"rng_rank1_epoch{EPOCHS}.safetensors"]
