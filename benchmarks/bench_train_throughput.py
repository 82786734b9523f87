"""Training throughput of MMTalker in sequences (training windows) per second, on CPU or GPU, one or
several processes.

    .venv/bin/python benchmarks/bench_train_throughput.py [--device cuda] [--batch-size 8] [--epochs 3]
    torchrun --standalone --nproc_per_node 4 benchmarks/bench_train_throughput.py --device cuda

Trains with ``configs/mmtalker_synth.yaml`` (or ``--config``) through ``mmtalker.train.loop.train`` on
``--data`` (default: a dataset of random smooth motion on a ~5,000-vertex face written by
``bench_dataset_stream.write_dataset``, 50 clips) into a temporary run folder. The time between the starts of
consecutive training steps (forward, backward, gradient all-reduce, optimizer update; validation and setup
excluded) is measured after the first epoch; throughput = windows per step x processes / seconds per step.
On a GPU the step runs under bf16 autocast, as in every training run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "mmtalker_synth.yaml")
    parser.add_argument("--data", type=Path, help="dataset folder (default: 50 clips of random motion, written to a temp folder)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per step and process")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is not timed)")
    parser.add_argument("--audio-encoder", default="logmel", help="encoder spec (features are cached before timing)")
    args = parser.parse_args()
    from mmtalker.errors import MMTalkerError
    from mmtalker.models.registry import config_kind

    try:
        kind = config_kind(args.config)
    except MMTalkerError as err:
        parser.error(str(err))
    if kind != "mmtalker":
        parser.error(f"{args.config} trains {kind}; this benchmark measures MMTalker's training step "
                     "(give an MMTalker config, e.g. configs/mmtalker_synth.yaml)")

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    # one folder for all processes of this launch (torchrun gives them one run id): rank 0 writes the data
    work = Path(tempfile.gettempdir()) / f"mmtalker_tput_{os.environ.get('TORCHELASTIC_RUN_ID', os.getpid())}"
    try:
        run(args, work, rank, world)
    finally:
        if rank == 0:
            shutil.rmtree(work, ignore_errors=True)  # our own scratch folder


def run(args, work: Path, rank: int, world: int) -> None:
    import torch

    from mmtalker.train import loop
    from mmtalker.train.config import load_config

    data = args.data
    if data is None:
        data = work / "data"
        if rank == 0:
            from bench_dataset_stream import write_dataset

            write_dataset(data, scale=50 / 248, splits={"train": {"subjects": "*", "sentences": ["1-5"]},
                                                        "val": {"subjects": "*", "sentences": [6]},
                                                        "test": {"subjects": "*", "sentences": [7]}})
        else:
            while not (data / "manifest.json").is_file():  # written last
                time.sleep(0.5)
    overrides = {"data": {"path": str(data), "cache_dir": str(work / f"cache{rank}"), "val_max_clips": 2, "augment_variants": 0},
                 "model": {"audio_encoder": args.audio_encoder},
                 "optim": {"epochs": args.epochs, "max_minutes": None, "batch_size": args.batch_size, "device": args.device}}
    config = load_config(args.config, overrides)

    starts: list[tuple[int, float]] = []
    inner = loop.training_step

    def timed_step(*step_args, **step_kw):
        if torch.cuda.is_available() and args.device.startswith("cuda"):
            torch.cuda.synchronize()
        starts.append((len(starts), time.perf_counter()))
        return inner(*step_args, **step_kw)

    loop.training_step = timed_step
    t0 = time.perf_counter()
    loop.train(config, work / "run", overwrite=True)
    total = time.perf_counter() - t0
    if rank != 0:
        return
    steps = len(starts)
    per_epoch = steps // args.epochs
    timed = [b[1] - a[1] for a, b in zip(starts[per_epoch:], starts[per_epoch + 1:])]
    step_s = statistics.median(timed) if timed else float("nan")
    out = {"device": args.device, "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
           "processes": world, "batch_per_process": args.batch_size, "window_frames": config.data.window_frames,
           "points": config.sampler.points, "audio_encoder": args.audio_encoder, "steps_timed": len(timed),
           "seconds_per_step": round(step_s, 4), "sequences_per_s": round(args.batch_size * world / step_s, 1),
           "mixed_precision": "bf16 autocast" if args.device.startswith("cuda") else "float32", "wall_s": round(total, 1)}
    print(json.dumps(out))
    print(f"\n{out['sequences_per_s']} training sequences/s ({world} process(es) x {args.batch_size} windows of "
          f"{config.data.window_frames} frames, {out['mixed_precision']}, {out['seconds_per_step']} s/step)")


if __name__ == "__main__":
    main()
