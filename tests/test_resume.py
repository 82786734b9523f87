"""A training run killed with SIGKILL and continued with ``--resume`` ends where an uninterrupted run ends.

Both runs use the same seed in deterministic mode on the fake dataset. The killed run is stopped the
moment its history shows a finished epoch (the checkpoint in last/ is written before that line), then
``mmtalker train --resume`` continues it. Final weights, training state (optimizer moments, sampler
logits) and the per-epoch history after the kill must equal the uninterrupted run's.
"""

from __future__ import annotations

import json
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
KILL_AFTER_EPOCH = 3
TINY = {
    "data": {"augment_variants": 1, "window_frames": 16, "val_max_clips": 2},
    "model": {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 16, "gcn_layers": 1, "num_region_tokens": 4, "heads": 2,
              "audio_layers": 1, "regressor_hidden": 16, "regressor_layers": [8]},
    "sampler": {"points": 32},
    "optim": {"epochs": EPOCHS, "max_minutes": None, "batch_size": 2, "lr": 0.01, "warmup_steps": 2,
              "select_metric": "loss", "device": "cpu", "deterministic": True, "seed": 3},
}


def _train_cmd(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmtalker", "train", "--config", str(config), "--data", str(data), "--out", str(out), *extra]


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(uninterrupted run folder, killed-then-resumed run folder, epoch the kill left in last/)."""
    root = tmp_path_factory.mktemp("resume")
    data = write_fake_dataset(root / "data", clips_per_subject=4)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"base": str(CONFIGS / "mmtalker_synth.yaml"),
                                      **TINY, "data": {**TINY["data"], "cache_dir": str(root / "cache")}}))
    whole, killed = root / "whole", root / "killed"
    done = subprocess.run(_train_cmd(config, data, whole), env=training_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(_train_cmd(config, data, killed), env=training_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while epochs_done(killed) < KILL_AFTER_EPOCH and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed: make it longer"
    state = json.loads((killed / "last" / "training_state.json").read_text())
    stopped_at = state["counters"]["epoch"]
    weights_epoch = json.loads((killed / "last" / "config.json").read_text())["extras"]["epoch"]
    assert weights_epoch == stopped_at, f"the kill left weights of epoch {weights_epoch} beside the state of epoch {stopped_at}"
    assert KILL_AFTER_EPOCH <= stopped_at < EPOCHS
    assert not (killed / "results.json").exists()

    resumed = subprocess.run(_train_cmd(config, data, killed, "--resume"), env=training_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return whole, killed, stopped_at


def test_resume_continues_the_epoch_and_step_count(runs):
    """The resumed run neither repeats nor skips an epoch, and ends on the same step count."""
    whole, killed, stopped_at = runs
    ha, hb = _history(whole), _history(killed)
    assert [r["epoch"] for r in hb] == list(range(1, EPOCHS + 1)), "an epoch is missing or repeated after the resume"
    assert [r["step"] for r in hb] == [r["step"] for r in ha]
    assert stopped_at < EPOCHS  # some epochs really ran after the resume
    for ra, rb in zip(ha[:stopped_at], hb[:stopped_at]):  # before the kill: the same deterministic run
        assert rb["train"]["loss"] == ra["train"]["loss"]


def test_resumed_run_ends_with_the_same_weights(runs):
    whole, killed, _ = runs
    a = load_file(str(whole / "last" / "model.safetensors"))
    b = load_file(str(killed / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)


def test_resumed_run_ends_with_the_same_training_state(runs):
    """Optimizer moments, step counts and the sampler's logits all continue as if never stopped."""
    whole, killed, _ = runs
    a = load_file(str(whole / "last" / "training_state.safetensors"))
    b = load_file(str(killed / "last" / "training_state.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("rng."):
            continue  # the torch RNG state may differ in bytes the generator does not use
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)
    ca = json.loads((whole / "last" / "training_state.json").read_text())["counters"]
    cb = json.loads((killed / "last" / "training_state.json").read_text())["counters"]
    assert (cb["epoch"], cb["step"]) == (ca["epoch"], ca["step"]) == (EPOCHS, ca["step"])


def test_resumed_history_matches_epoch_by_epoch(runs):
    whole, killed, _ = runs
    for ra, rb in zip(_history(whole), _history(killed)):
        for part in ("train", "val"):
            for key, value in ra[part].items():
                assert rb[part][key] == pytest.approx(value, rel=1e-5, abs=1e-9), (rb["epoch"], part, key)


def test_resumed_run_scores_the_test_split_the_same(runs):
    whole, killed, _ = runs
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert b["best_epoch"] == a["best_epoch"] and b["steps"] == a["steps"]
    for key, value in a["test"].items():
        assert b["test"][key] == pytest.approx(value, rel=1e-5, abs=1e-12), key
