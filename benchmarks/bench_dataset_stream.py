"""Peak memory of reading and scoring a dataset 10x the size of the synthetic benchmark's default.

    .venv/bin/python benchmarks/bench_dataset_stream.py [--scale 10] [--root DIR] [--keep] [--threads 1]

1. Writes a native dataset (``DatasetWriter``) of ``248 x scale`` sequences of random smooth motion on a
   ~5,000-vertex grid face at 30 fps, 2-5 s each, with noise as audio: the default preset's 248 sequences
   and face size, so ``--scale 10`` is 10x the default (about 15 GB). Nothing is kept unless ``--keep``;
   ``--root`` reuses a dataset written before.
2. In a fresh process (so its peak memory is that of the job alone): opens the dataset, then
   a. iterates every sequence's vertices (``Sequence.vertices()``, a memory map of the .npy file),
   b. scores the static-template baseline on every sequence with ``mmtalker.eval.protocol.score``
      (what ``mmtalker evaluate`` runs), the whole dataset as one split.
   A thread samples ``/proc/self/status`` every 5 ms: peak ``RssAnon`` (memory the process owns) and peak
   ``VmRSS`` (which also counts pages of the memory-mapped files: page cache the kernel may drop).

Prints one JSON line per stage and a Markdown table. The claim to check: peak owned memory stays near one
sequence's size whatever the dataset's size.

Measured on the 2-core development machine (23 GB of memory), ``--scale 10``: 2,480 sequences, 16.0 GB on
disk (writing: 400 s). Opening: 40 s (every file's header is checked), 27 MB owned. Iterating all vertices:
34 s, peak owned memory 30 MB (RSS with mapped pages 65 MB). Scoring the static baseline over all of it:
478 s (5.2 sequences/s), peak owned memory 112 MB, RSS 139 MB. At ``--scale 0.1`` (25 sequences) the same
stages peak at 27 and 105 MB: memory does not grow with the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_SEQUENCES = 248  # the synthetic benchmark's default preset: 6 x (32 + 4 + 4) + 2 x 4 sentences
DEFAULT_SUBJECTS = 8
GRID = 71  # 71 x 71 = 5,041 vertices, the default preset's face size (5,000)
FPS = 30.0


# ------------------------------------------------------------------------------------------------ writing
def grid_face(n: int):
    """An n x n curved grid (metres, 0.15 m wide) and its triangles."""
    from mmtalker.mesh.io import Mesh

    x, y = np.meshgrid(np.linspace(-0.075, 0.075, n), np.linspace(-0.075, 0.075, n))
    z = 0.03 * np.cos(x / 0.075) * np.cos(y / 0.075)
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float32)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a, b, c, d = (i * n + j).ravel(), (i * n + j + 1).ravel(), ((i + 1) * n + j).ravel(), ((i + 1) * n + j + 1).ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    return Mesh(verts, faces)


def smooth_motion(rng: np.random.Generator, template: np.ndarray, frames: int, modes: np.ndarray) -> np.ndarray:
    """(T, V, 3) float32: the template plus K spatial modes (K, V, 3) driven by smooth random curves."""
    k = modes.shape[0]
    knots = rng.standard_normal((frames // 10 + 2, k))
    t = np.linspace(0, len(knots) - 1, frames)
    curves = np.stack([np.interp(t, np.arange(len(knots)), knots[:, m]) for m in range(k)], 1)  # (T, K)
    motion = (curves @ modes.reshape(k, -1)).reshape(frames, -1, 3)
    return (template[None] + motion).astype(np.float32)


def write_dataset(root: Path, scale: float, seed: int = 0, splits: dict | None = None) -> dict:
    from mmtalker.audio.io import SAMPLE_RATE
    from mmtalker.data.writer import DatasetWriter
    from mmtalker.progress import progress

    rng = np.random.default_rng(seed)
    mesh = grid_face(GRID)
    V = mesh.vertices.shape[0]
    r = np.linalg.norm(mesh.vertices[:, :2], axis=1)
    modes = rng.standard_normal((6, V, 3)).astype(np.float32) * 0.002 * np.exp(-(r / 0.04) ** 2)[None, :, None]
    writer = DatasetWriter(root)
    writer.set_topology(mesh)
    writer.set_region("lips", np.flatnonzero(r < 0.02))
    writer.set_region("eye_region", np.flatnonzero(mesh.vertices[:, 1] > 0.05))
    writer.set_region("upper_face", np.flatnonzero(mesh.vertices[:, 1] > 0.03))
    count = int(round(DEFAULT_SEQUENCES * scale))
    per_subject = -(-count // DEFAULT_SUBJECTS)
    templates = {}
    for n in progress(range(count), desc="writing", unit="seq"):
        subject = f"s{n % DEFAULT_SUBJECTS:02d}"
        if subject not in templates:
            templates[subject] = mesh.vertices + rng.normal(0, 0.002, (V, 3)).astype(np.float32)
            writer.set_template(subject, templates[subject])
        seconds = rng.uniform(2.0, 5.0)
        frames = int(round(seconds * FPS))
        audio = (0.05 * rng.standard_normal(int(frames / FPS * SAMPLE_RATE))).astype(np.float32)
        writer.add_sequence(subject, f"sentence{n // DEFAULT_SUBJECTS + 1:04d}", audio,
                            smooth_motion(rng, templates[subject], frames, modes))
    writer.finish(name=f"stream-x{scale:g}", fps=FPS, splits=splits or {"all": {"subjects": "*"}},
                  source="benchmarks/bench_dataset_stream.py: random smooth motion")
    return {"sequences": count, "per_subject": per_subject, "vertices": V}


def folder_gb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9


# ------------------------------------------------------------------------------------------------ measuring
class MemorySampler(threading.Thread):
    """Peak RssAnon and VmRSS (MB) of this process, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self._done = interval, {"RssAnon": 0.0, "VmRSS": 0.0}, threading.Event()

    @staticmethod
    def read() -> dict:
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    out[key] = int(value.split()[0]) / 1024
        return out

    def run(self) -> None:
        while not self._done.is_set():
            for key, value in self.read().items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(self.interval)

    def stop(self) -> dict:
        self._done.set()
        self.join()
        return {f"peak_{k.lower()}_mb": round(v, 1) for k, v in self.peak.items()}


def _measure(name: str, job) -> dict:
    sampler = MemorySampler()
    base = MemorySampler.read()
    sampler.start()
    t0 = time.perf_counter()
    info = job()
    seconds = time.perf_counter() - t0
    out = {"stage": name, "seconds": round(seconds, 2), **sampler.stop(),
           "start_rssanon_mb": round(base["RssAnon"], 1), **info}
    out["sequences_per_s"] = round(info["sequences"] / seconds, 1)
    print(json.dumps(out), flush=True)
    return out


def worker(root: Path) -> None:
    from mmtalker.data.dataset import open_dataset
    from mmtalker.eval.protocol import regions_for, score

    t0 = time.perf_counter()
    dataset = open_dataset(root)
    sequences = dataset.sequences("all")
    print(json.dumps({"stage": "open", "seconds": round(time.perf_counter() - t0, 2), "sequences": len(sequences),
                      "rssanon_mb": round(MemorySampler.read()["RssAnon"], 1)}), flush=True)

    def iterate() -> dict:
        frames, largest, total = 0, 0, 0.0
        for seq in sequences:
            v = seq.vertices()  # (T, V, 3) memory map
            for start in range(0, len(v), 64):  # bounded reads: 64 frames at a time
                total += float(np.abs(v[start:start + 64]).sum(dtype=np.float64))
            frames += len(v)
            largest = max(largest, v.nbytes)
        return {"sequences": len(sequences), "frames": frames, "largest_sequence_mb": round(largest / 2**20, 1),
                "checksum": round(total, 3), "memmap": isinstance(sequences[0].vertices(), np.memmap)}

    def evaluate() -> dict:
        regions = regions_for(dataset)

        def static(seq):  # the template held still: a baseline any dataset can be scored with
            template = dataset.template(seq.subject)
            return [np.broadcast_to(template, (seq.num_frames, *template.shape))]

        result = score("static template", sequences, static, dataset, regions)
        return {"sequences": len(sequences), "lve": result.overall.get("lve"), "mve": result.overall.get("mve")}

    _measure("iterate vertices", iterate)
    _measure("evaluate (static baseline)", evaluate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="dataset size as a multiple of the default preset (10)")
    parser.add_argument("--root", type=Path, help="dataset folder: reused when it holds a dataset, else written there")
    parser.add_argument("--keep", action="store_true", help="keep the dataset written in a temporary folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)

    tmp = None
    root = args.root
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="mmtalker_stream_"))
        root = tmp / "data"
    try:
        if not (root / "manifest.json").is_file():
            t0 = time.perf_counter()
            info = write_dataset(root, args.scale)
            print(json.dumps({"stage": "write", "seconds": round(time.perf_counter() - t0, 1), **info}), flush=True)
        size = folder_gb(root)
        print(json.dumps({"stage": "dataset", "root": str(root), "size_gb": round(size, 2)}), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MMTALKER_QUIET": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, __file__, "--worker", str(root)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for line in lines:
            print(json.dumps(line))
        print(f"\ndataset: {size:.2f} GB on disk ({args.scale:g}x the default preset), {lines[0]['sequences']} sequences\n")
        print("| stage | seconds | sequences/s | peak owned memory (RssAnon, MB) | peak RSS incl. mapped files (MB) |")
        print("| --- | --- | --- | --- | --- |")
        for line in lines[1:]:
            print(f"| {line['stage']} | {line['seconds']} | {line['sequences_per_s']} | {line['peak_rssanon_mb']} | "
                  f"{line['peak_vmrss_mb']} |")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp)  # our own temporary folder, nothing of the user's
        elif tmp is not None:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
