"""Shared pieces of the benchmarks: a checkpoint to time, test speech of any length, a fresh worker process
per measurement (so peak memory is that of the measured job alone); for the scripts that score a dataset
split, the split with its regions and the unit its squared distances are reported in."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE_AUDIO = REPO.parent / "shared" / "fixtures" / "audio"
SPEECH = ["selftalk_test_16k_21s.wav", "faceformer_test_44k.wav", "codetalker_man_stereo_44k.wav", "voca_test_sentence_22k.wav"]


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of human speech (16 kHz float32): the fixture recordings concatenated and repeated."""
    from mmtalker.audio.io import SAMPLE_RATE, load_audio

    clips = [load_audio(FIXTURE_AUDIO / name) for name in SPEECH if (FIXTURE_AUDIO / name).is_file()]
    if not clips:
        raise SystemExit(f"no speech fixtures in {FIXTURE_AUDIO}; pass --audio FILE")
    one = np.concatenate(clips)
    n = int(seconds * SAMPLE_RATE)
    return np.resize(one, n).astype(np.float32)


def random_checkpoint(folder: Path, vertices: int, overrides: dict | None = None) -> str:
    """Save a randomly initialised model (the shipped config's network, with ``overrides``) on the default face;
    returns a description."""
    from mmtalker.inference.random_model import build_random_model, default_face_mesh
    from mmtalker.models.mmtalker import MMTalkerConfig
    from mmtalker.train.checkpoint import save_checkpoint

    mesh, source = default_face_mesh(vertices)
    model = build_random_model(mesh, MMTalkerConfig(**{**shipped_model_config(), "subjects": ["s1", "s2"], **(overrides or {})}))
    save_checkpoint(folder, model)
    config = f"configs/mmtalker_synth.yaml's model with {overrides}" if overrides else "configs/mmtalker_synth.yaml's model"
    return f"randomly initialised MMTalker ({config}) on the default face ({source}, {mesh.num_vertices} vertices)"


def shipped_model_config() -> dict:
    """The network settings of configs/mmtalker_synth.yaml (what training uses by default), as a dict."""
    import dataclasses

    from mmtalker.train.config import load_config

    return dataclasses.asdict(load_config(REPO / "configs" / "mmtalker_synth.yaml").model)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str, args: list[str], threads: int) -> dict:
    """Run ``script --worker ARGS`` in a fresh interpreter with ``threads`` threads; returns its JSON line."""
    env = {"OMP_WAIT_POLICY": "PASSIVE",  # on shared cores, spinning threads burn the time the others wait for
           **os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MMTALKER_QUIET": "1",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, script, "--worker", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_overrides(items: list[str] | None) -> dict:
    """``KEY=JSON`` model-config overrides, e.g. ``regressor_layers=[]``."""
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = json.loads(value)
    return out


def checkpoint_or_random(checkpoint: str | None, vertices: int, overrides: list[str] | None = None
                         ) -> tuple[str, str, tempfile.TemporaryDirectory | None]:
    """(checkpoint folder, description, temp dir to keep alive)."""
    if checkpoint:
        return checkpoint, f"checkpoint {checkpoint}", None
    tmp = tempfile.TemporaryDirectory(prefix="mmtalker-bench-")
    folder = Path(tmp.name) / "random"
    return str(folder), random_checkpoint(folder, vertices, parse_overrides(overrides)), tmp


class Timer:
    """Wall and process CPU time of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def machine_note(threads: int) -> str:
    load = os.getloadavg()
    return (f"{threads} threads; machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} at start "
            "(on a shared machine wall time is inflated by other jobs; CPU time (all threads) is steadier: "
            "CPU time / threads estimates the wall time on idle cores)")


REGION_WORDS = {"lips": "lip", "eyes": "eye", "upper": "upper-face"}


def open_split(data: str, split: str, need: tuple[str, ...] = (), every: int = 1):
    """(dataset, its protocol regions, every ``every``-th sequence of ``split``); one MMTalkerError naming
    ``data`` when a region in ``need`` (``lips``, ``eyes``, ``upper``) is missing or the split is empty."""
    from mmtalker.data.dataset import open_dataset
    from mmtalker.errors import MMTalkerError
    from mmtalker.eval.protocol import regions_for

    dataset = open_dataset(data)
    regions = regions_for(dataset)
    missing = [REGION_WORDS[name] for name in need if getattr(regions, name) is None]
    if missing:
        raise MMTalkerError(data, f"has no {' and no '.join(missing)} region in its manifest")
    sequences = dataset.sequences(split)[:: max(every, 1)]
    if not sequences:
        raise MMTalkerError(data, f"split {split!r} holds no sequences")
    return dataset, regions, sequences


def report_unit(dataset) -> tuple[float, str]:
    """The manifest's report scale and the label of squared distances multiplied by it, e.g. (1e5, "×1e-05 m²")."""
    units = dataset.manifest.units
    scale = float(units.get("report_scale", 1.0))
    return scale, f"×{1 / scale:g} {units.get('length', '')}²"
