"""Time the audio front end on CPU: Whisper log-mel, and log-mel + Whisper tiny.en encoder.

    python benchmarks/bench_audio_encoder.py [--seconds 10] [--threads 2] [--repeats 7]

Prints the median wall time of several runs, the real-time factor (audio seconds per compute second)
and the fastest run (the CPU may be shared: the fastest shows the cost without contention).
The input is seeded noise: the encoder's cost does not depend on what is said.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mmtalker.audio.encoders import build_audio_encoder
from mmtalker.audio.io import SAMPLE_RATE


def run_times(fn, repeats: int) -> list[float]:
    fn()  # warm-up (allocations, oneDNN kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median reported)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    noise = np.random.default_rng(0).standard_normal((1, int(args.seconds * SAMPLE_RATE)))
    audio = torch.from_numpy(noise.astype(np.float32) * 0.1)
    encoder = build_audio_encoder("whisper-tiny.en").eval()
    print(f"audio {args.seconds:g} s, torch threads {torch.get_num_threads()}, median of {args.repeats} runs")
    with torch.inference_mode():
        rows = {
            "log-mel": lambda: encoder.mel(audio),
            "log-mel + whisper tiny.en": lambda: encoder(audio),
            "  (all hidden states)": lambda: encoder.hidden_states(audio),
        }
        for name, fn in rows.items():
            times = run_times(fn, args.repeats)
            sec = statistics.median(times)
            print(f"{name:28s} {sec:8.4f} s   {args.seconds / sec:8.1f}x real time   (fastest {min(times):.4f} s)")


if __name__ == "__main__":
    main()
