"""A tiny talking-face dataset for training tests: a curved grid "face" whose mouth opens with loudness.

The motion is a smooth function of the audio's envelope, so a model that hears the audio can learn it.
Written with mmtalker.data.writer.DatasetWriter into the native layout and read back with open_dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.mesh.io import Mesh

FPS = 25.0


def grid_mesh(n: int = 9) -> Mesh:
    """An n×n grid on a gently curved sheet (metres, about 0.1 m wide): a disk-like open surface."""
    x, y = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n))
    z = 0.02 * np.cos(x / 0.05) * np.cos(y / 0.05)
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float32)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [(a, b, d), (a, d, c)]
    return Mesh(verts, np.asarray(faces, np.int64))


def envelope_audio(rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Bursts of a tone with a random smooth envelope; returns audio (N,) and envelope (N,) in [0, 1]."""
    n = int(seconds * SAMPLE_RATE)
    knots = rng.uniform(0, 1, int(seconds * 4) + 2) ** 2
    env = np.interp(np.arange(n), np.linspace(0, n - 1, len(knots)), knots)
    t = np.arange(n) / SAMPLE_RATE
    audio = 0.5 * env * np.sin(2 * np.pi * 220 * t) + 1e-3 * rng.standard_normal(n)
    return audio.astype(np.float32), env


def write_fake_dataset(root: Path, *, subjects=("s01", "s02"), clips_per_subject=4, seconds=1.6, seed=0) -> Path:
    """Write the fake dataset to ``root``: sentences 1..k-1 train, the last one val and test."""
    from mmtalker.data.writer import DatasetWriter

    rng = np.random.default_rng(seed)
    mesh = grid_mesh()
    V = mesh.vertices.shape[0]
    center = mesh.vertices[:, :2].mean(0)
    dist = np.linalg.norm(mesh.vertices[:, :2] - center, axis=1)
    lips = np.flatnonzero(dist < 0.025)
    eyes = np.flatnonzero(mesh.vertices[:, 1] > 0.035)
    writer = DatasetWriter(root)
    writer.set_topology(mesh)
    writer.set_region("lips", lips)
    writer.set_region("eye_region", eyes)
    writer.set_region("upper_face", eyes)
    bump = np.exp(-((dist / 0.02) ** 2))[:, None] * np.array([0.0, -0.004, 0.002], np.float32)  # (V, 3) mouth opening
    for s, subject in enumerate(subjects):
        template = mesh.vertices + rng.normal(0, 0.001, (V, 3)).astype(np.float32)
        writer.set_template(subject, template)
        for k in range(clips_per_subject):
            audio, env = envelope_audio(rng, seconds)
            T = int(round(seconds * FPS))
            env_frames = np.interp(np.arange(T) / FPS, np.arange(len(env)) / SAMPLE_RATE, env)
            verts = template[None] + (1.0 + 0.3 * s) * env_frames[:, None, None] * bump[None]
            writer.add_sequence(subject, f"sentence{k + 1:02d}", audio, verts.astype(np.float32))
    last = clips_per_subject
    splits = {
        "train": {"subjects": "*", "sentences": [f"1-{last - 1}"]},
        "val": {"subjects": "*", "sentences": [last]},
        "test": {"subjects": "*", "sentences": [last]},
    }
    writer.finish(name="fake", fps=FPS, splits=splits, extra={"oracle_floor": {"lve": 0.0}})
    return root
