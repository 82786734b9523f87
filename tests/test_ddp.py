"""Data-parallel training through torchrun + DDP: 2 CPU processes (gloo) with batch B each equal one
process with batch 2B, within floating-point tolerance.

Every rank draws the whole global batch (clips, variants, crop windows) and the UV points from
generators seeded alike, and trains on its slice, so the two runs are the same computation as long as
the loss is a mean over equal slices: the clips here have equal lengths, and both dropouts are 0 (dropout masks
come from each rank's own RNG). The model is initialised from the same
seed (DDP broadcasts rank 0's weights); validation runs on rank 0 with the averaged model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from conftest import training_env
from fake_talk import write_fake_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EPOCHS = 3
TINY = {
    "data": {"augment_variants": 0, "window_frames": 64, "val_max_clips": 2},
    "model": {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 16, "gcn_layers": 1, "num_region_tokens": 4, "heads": 2,
              "audio_layers": 1, "regressor_hidden": 16, "regressor_layers": [8], "dropout": 0.0,
              "feature_dropout": 0.0},
    "sampler": {"points": 32},
    "optim": {"epochs": EPOCHS, "max_minutes": None, "lr": 0.01, "warmup_steps": 1, "select_metric": "loss",
              "device": "cpu", "seed": 5},
}
FINETUNE = {**TINY, "model": {**TINY["model"], "audio_encoder": "whisper-tiny.en@2+1", "audio_finetune": 2},
            "optim": {**TINY["optim"], "epochs": 2, "audio_lr": 3e-3, "ema": 0.0}}  # last/ holds the trained weights


def _single_and_ddp(root: Path, settings: dict) -> tuple[Path, Path]:
    data = write_fake_dataset(root / "data", clips_per_subject=3)  # 4 training clips of 40 frames
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"base": str(CONFIGS / "mmtalker_synth.yaml"),
                                      **settings, "data": {**settings["data"], "cache_dir": str(root / "cache")}}))
    train = ["train", "--config", str(config), "--data", str(data)]
    single = root / "single"
    one = subprocess.run([sys.executable, "-m", "mmtalker", *train, "--out", str(single), "--batch-size", "4"],
                         env=training_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    double = root / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2"]
    two = subprocess.run([*launcher, "-m", "mmtalker", *train, "--out", str(double), "--batch-size", "2"],
                         env=training_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    return single, double


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(run folder of 1 process with batch 4, run folder of 2 processes with batch 2 each)."""
    return _single_and_ddp(tmp_path_factory.mktemp("ddp"), TINY)


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_two_processes_run_as_one_data_parallel_job(runs):
    """One run folder, written by rank 0 only, with the same number of steps as the doubled batch."""
    single, double = runs
    h1, h2 = _history(single), _history(double)
    assert [r["epoch"] for r in h2] == list(range(1, EPOCHS + 1))
    assert [r["step"] for r in h2] == [r["step"] for r in h1]
    assert (double / "results.json").is_file() and (double / "last" / "model.safetensors").is_file()
    assert not list(double.glob("**/*.tmp*")), "a temporary file of an unfinished write was left behind"


def test_same_weights_as_one_process_with_doubled_batch(runs):
    single, double = runs
    a = load_file(str(single / "last" / "model.safetensors"))
    b = load_file(str(double / "last" / "model.safetensors"))
    worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)
    scale = max(float(np.abs(a[k]).max()) for k in a)
    assert worst <= 1e-4 * scale, f"largest weight difference {worst:.3g} (weights up to {scale:.3g})"


def test_same_validation_trajectory_as_one_process(runs):
    single, double = runs
    for r1, r2 in zip(_history(single), _history(double)):
        for key in ("loss", "mve", "lve"):
            assert r2["val"][key] == pytest.approx(r1["val"][key], rel=1e-5), (r1["epoch"], key)


def test_fine_tuned_speech_blocks_train_alike_in_two_processes(tmp_path):
    """With model.audio_finetune the tuned Whisper block runs outside the model's forward (on the cached prefix);
    its gradient must still be averaged over the ranks: the same weights as one process with the doubled batch."""
    single, double = _single_and_ddp(tmp_path, FINETUNE)
    a = load_file(str(single / "last" / "model.safetensors"))
    b = load_file(str(double / "last" / "model.safetensors"))
    from mmtalker.audio.whisper import load_whisper_encoder

    pretrained = {f"audio_blocks.layers.0.{k}": v.numpy() for k, v in load_whisper_encoder().layers[1].state_dict().items()}
    moved = max(float(np.abs(a[k].astype(np.float64) - v).max()) for k, v in pretrained.items())
    apart = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in pretrained)
    assert moved > 1e-3, f"the tuned block barely trained ({moved:.3g})"
    assert apart <= 0.01 * moved, f"one process and two differ by {apart:.3g}; training moved the block by {moved:.3g}"
    for r1, r2 in zip(_history(single), _history(double)):
        assert r2["val"]["loss"] == pytest.approx(r1["val"]["loss"], rel=1e-5)
