"""Inference speed and peak memory of MMTalker, VOCA, FaceFormer and CodeTalker on the same speech, as ratios to MMTalker.

    python benchmarks/bench_models.py [--seconds 10] [--threads 2] [--repeats 3] [--device cpu]
                                      [--checkpoint mmtalker=runs/mmtalker_synth/best --checkpoint voca=...]

Each model animates ``--seconds`` of speech (seeded noise: the cost does not depend on what is said) on
the default synthetic face (about 5000 vertices), from audio to all vertices of every frame: the shared
Whisper tiny.en encoder, then the model (MMTalker: ``predict_vertices``; FaceFormer and CodeTalker decode
autoregressively, as they must at inference). Without ``--checkpoint`` the networks are randomly
initialised with the sizes of ``configs/<model>_synth.yaml`` (speed and memory do not depend on training).

Each model runs in its own child process, so that peak memory is its own: on CPU the growth of the peak
resident set during the first inference over the resident set just before it (model and encoder loaded);
on CUDA ``torch.cuda.max_memory_allocated`` over what was allocated before. Times are the median of
``--repeats`` runs after that first one; "model" excludes the shared encoder, "total" includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

KINDS = ("mmtalker", "voca", "faceformer", "codetalker")
REPO = Path(__file__).resolve().parents[1]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def build(kind: str, checkpoint: str | None, num_vertices: int, device: str):
    """A model of ``kind`` (eval mode) and its speech encoder."""
    from mmtalker.audio.encoders import model_audio_dim, model_audio_encoder, trained_model_encoder
    from mmtalker.models.registry import get_kind, load_model

    if checkpoint:
        model, _, _ = load_model(checkpoint, device, expect=kind)
        return model, trained_model_encoder(model)  # with the Whisper blocks it tuned, if any
    from mmtalker.inference.random_model import build_random_model, default_face_mesh
    from mmtalker.train.config import build_dataclass, read_config_dict

    mesh, _ = default_face_mesh(num_vertices)
    section = read_config_dict(REPO / "configs" / f"{kind}_synth.yaml").get("model", {})
    config = build_dataclass(get_kind(kind).config_class(), section, f"configs/{kind}_synth.yaml: model")
    config.subjects = [f"s{i}" for i in range(6)]
    encoder = model_audio_encoder(config)
    config.audio_dim = model_audio_dim(config, encoder)  # the width the trainers give
    torch.manual_seed(0)
    if kind == "mmtalker":
        model = build_random_model(mesh, config)
    else:
        model = get_kind(kind).model_class()(config, mesh.vertices, None, 0.001, mesh.faces)
        if kind == "codetalker":
            model.stages_trained.fill_(2)
    return model.to(device).eval(), encoder


def measure(kind: str, checkpoint: str | None, seconds: float, repeats: int, num_vertices: int, device: str) -> dict:
    """Run in a child process: time and peak memory of one model."""
    from mmtalker.audio.encoders import features_at_fps
    from mmtalker.audio.io import SAMPLE_RATE

    model, encoder = build(kind, checkpoint, num_vertices, device)
    encoder = encoder.to(device).eval()
    fps = float(model.config.fps)
    T = int(round(seconds * fps))
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((1, int(seconds * SAMPLE_RATE))).astype(np.float32) * 0.1).to(device)
    subject = torch.tensor([0], device=device)

    def features():
        return features_at_fps(encoder(audio), encoder.rate, fps, T)

    def animate(feats):
        out = model.predict_vertices(feats, subject)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    with torch.inference_mode():
        feats = features()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_bytes()
        out = animate(feats)
        peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda") else _peak_rss_bytes()) - base
        assert out.shape == (1, T, model.num_vertices, 3)
        model_times, total_times = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f = features()
            t1 = time.perf_counter()
            animate(f)
            t2 = time.perf_counter()
            model_times.append(t2 - t1)
            total_times.append(t2 - t0)
    params = sum(p.numel() for p in model.parameters())
    return {"kind": kind, "params": params, "frames": T, "vertices": model.num_vertices, "model_s": statistics.median(model_times),
            "total_s": statistics.median(total_times), "peak_mb": max(peak, 0) / 2**20}


def table(rows: list[dict], seconds: float) -> str:
    ref = next(r for r in rows if r["kind"] == "mmtalker")
    lines = [f"{seconds:g} s of speech, {ref['frames']} frames, {ref['vertices']} vertices",
             "| model | params (M) | model time (s) | total time (s) | real-time factor | peak memory (MB) | time ÷ MMTalker | memory ÷ MMTalker |",
             "|" + " --- |" * 8]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['params'] / 1e6:.2f} | {r['model_s']:.3f} | {r['total_s']:.3f} | {seconds / r['total_s']:.1f}× | "
                     f"{r['peak_mb']:.0f} | {r['total_s'] / ref['total_s']:.2f} | {r['peak_mb'] / max(ref['peak_mb'], 1e-9):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="speech length in seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the first (median reported)")
    parser.add_argument("--vertices", type=int, default=5000, help="face size for randomly initialised models")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="KIND=DIR", help="a trained model instead of a random one")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)  # child process: measure one model
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    unknown = set(checkpoints) - set(KINDS)
    if unknown:
        parser.error(f"--checkpoint: unknown model {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    if args.one:
        print(json.dumps(measure(args.one, checkpoints.get(args.one), args.seconds, args.repeats, args.vertices, args.device)))
        return
    rows = []
    for kind in KINDS:
        cmd = [sys.executable, __file__, "--one", kind, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode:
            sys.exit(f"{kind}: benchmark failed\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{kind}: {rows[-1]['total_s']:.3f} s, {rows[-1]['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    print(table(rows, args.seconds))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
