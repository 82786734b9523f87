"""Shared test helpers: where the fixtures are, and a closeness check that says where it failed."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MMTALKER_QUIET", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _children_temp_dir(tmp_path_factory):
    """Child processes (torchrun's launcher writes a torchelastic_* folder per run) keep their temporary files
    under pytest's own temp folder, which pytest prunes, instead of leaving them in /tmp."""
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("child-tmp"))
    yield
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures from the repo root; tests that need it skip when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"test fixtures not found at {FIXTURES}")
    return FIXTURES


def assert_close(actual, expected, *, atol=1e-6, rtol=1e-5, what="value"):
    """np.allclose with a message naming the largest difference and where it is."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    diff = np.abs(a - b)
    tol = atol + rtol * np.abs(b)
    if not np.all(diff <= tol):
        where = np.unravel_index(np.argmax(diff - tol), diff.shape)
        raise AssertionError(f"{what}: max |diff| {diff.max():.3g} at {where} (actual {a[where]:.6g}, expected {b[where]:.6g})")


class Hang(AssertionError):
    """A reader or command ran past its time limit (raised by :func:`time_limit`)."""


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM; main thread only)."""

    def on_alarm(signum, frame):
        raise Hang(f"ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def training_env() -> dict:
    """Environment for a training run in a child process: this checkout's src/ first on PYTHONPATH, one
    thread, offline, quiet, and no torchrun variables inherited from the test process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MMTALKER_QUIET="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return env


def epochs_done(run_dir: Path) -> int:
    """Finished epochs of a (possibly running) training run: complete lines of its history.jsonl."""
    path = Path(run_dir) / "history.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.endswith("}")) if path.is_file() else 0
