"""Fuzzing the file readers: random bytes, cut files and flipped bytes either read as a valid result or
raise MMTalkerError, never another exception, never a hang (each read runs under an alarm)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtalker.audio.io import load_audio
from mmtalker.data.regions import Region, load_region
from mmtalker.data.safe_pickle import load_pickle
from mmtalker.errors import MMTalkerError
from mmtalker.mesh.io import Mesh, load_mesh
from conftest import time_limit

HANG_SECONDS = 20  # a read that takes longer than this counts as a hang
FUZZ = settings(
    max_examples=60,
    deadline=5000,  # ms; generous, the CPU is shared
    derandomize=True,  # the same examples on every run, so CI failures reproduce
    database=None,  # write nothing into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check_audio(out):
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1 and out.size > 0
    assert np.all(np.isfinite(out))


def _check_mesh(mesh):
    assert isinstance(mesh, Mesh) and mesh.num_vertices > 0 and mesh.num_faces > 0
    assert np.all(np.isfinite(mesh.vertices))
    assert mesh.faces.min() >= 0 and mesh.faces.max() < mesh.num_vertices
    if mesh.uv is not None:
        assert mesh.face_uv.shape == mesh.faces.shape and mesh.face_uv.max() < len(mesh.uv)


def _check_region(region):
    assert isinstance(region, Region) and len(region) > 0
    idx = region.indices
    assert idx.dtype == np.int64 and idx.min() >= 0 and np.all(np.diff(idx) > 0) and region.duplicates >= 0


READERS = {
    "load_audio": (load_audio, _check_audio),
    "load_mesh": (load_mesh, _check_mesh),
    "load_pickle": (load_pickle, lambda obj: None),  # any object is a valid result
    "load_region": (load_region, _check_region),
}


def _read(path: Path, data: bytes, reader: str) -> None:
    """Write ``data`` to ``path`` and read it: a valid result or MMTalkerError, nothing else."""
    path.write_bytes(data)
    fn, check = READERS[reader]
    with time_limit(HANG_SECONDS), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are allowed (e.g. OBJ faces without UVs)
        try:
            result = fn(path)
        except MMTalkerError as exc:
            assert exc.what is not None and str(path) in str(exc)
            return
    check(result)


# ------------------------------------------------------------------------------------------ seed files


def _tone(rate=16000, seconds=0.3):
    return (0.4 * np.sin(2 * np.pi * 300 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seeds(workdir) -> dict[str, tuple[bytes, str]]:
    """Valid small files of every kind: name -> (bytes, reader)."""
    out = {}
    for fmt, subtype, suffix in [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_24", "flac"),
                                 ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]:
        path = workdir / f"seed_{subtype}.{suffix}"
        sf.write(path, np.stack([_tone(), _tone()], axis=1), 16000, format=fmt, subtype=subtype)
        out[path.name] = (path.read_bytes(), "load_audio")
    obj = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 2/2 3/3 4/4\nf 1/1 3/3 4/4\n"
    out["seed.obj"] = (obj.encode(), "load_mesh")
    ply = (
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n"
    )
    out["seed.ply"] = (ply.encode(), "load_mesh")
    masks = {"lips": np.array([5, 1, 1, 9]), "eye_region": np.arange(20)}
    out["seed.pkl"] = (pickle.dumps(masks, protocol=2), "load_pickle")
    out["seed2.pkl"] = (pickle.dumps({"lips": np.array([5, 1, 1, 9])}, protocol=2), "load_region")
    out["seed.txt"] = (b"649,1572,1573,1576,1577\n", "load_region")
    np.savez(workdir / "seed.npz", lips=np.array([3, 4, 4]))
    out["seed.npz"] = ((workdir / "seed.npz").read_bytes(), "load_region")
    return out


SUFFIX_READERS = [
    (".wav", "load_audio"), (".mp3", "load_audio"), (".ogg", "load_audio"),
    (".obj", "load_mesh"), (".ply", "load_mesh"),
    (".pkl", "load_pickle"), (".pkl", "load_region"), (".txt", "load_region"), (".npz", "load_region"), (".npy", "load_region"),
]


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("suffix,reader", SUFFIX_READERS)
@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(workdir, suffix, reader, data):
    _read(workdir / f"random{suffix}", data, reader)


@pytest.mark.parametrize("prefix", [b"RIFF", b"ply\nformat ascii 1.0\n", b"ply\nformat binary_little_endian 1.0\n",
                                    b"v 0 0 0\nf ", b"\x80\x02", b"PK\x03\x04", b"\x93NUMPY"])
@FUZZ
@given(data=st.binary(max_size=500))
def test_random_bytes_after_magic(workdir, prefix, data):
    """Random bodies behind each format's magic bytes get past the first sniff and into the parsers."""
    for suffix, reader in SUFFIX_READERS:
        _read(workdir / f"magic{suffix}", prefix + data, reader)


@FUZZ
@given(choice=st.integers(0, 10**6), cut=st.floats(0, 1))
def test_truncated_seed_files(workdir, seeds, choice, cut):
    names = sorted(seeds)
    data, reader = seeds[names[choice % len(names)]]
    name = names[choice % len(names)]
    _read(workdir / f"cut_{name}", data[: int(len(data) * cut)], reader)


@FUZZ
@given(choice=st.integers(0, 10**6), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_flipped_bytes_in_seed_files(workdir, seeds, choice, flips):
    names = sorted(seeds)
    name = names[choice % len(names)]
    data, reader = seeds[name]
    buf = bytearray(data)
    for where, value in flips:
        buf[int(where * len(buf))] = value
    _read(workdir / f"flip_{name}", bytes(buf), reader)


FIXTURE_FILES = [
    ("audio/voca_test_sentence_22k.wav", "load_audio"),
    ("meshes/flame_sample.ply", "load_mesh"),
    ("meshes/flame_uv.obj", "load_mesh"),
    ("regions/vocaset_lve.txt", "load_region"),
    ("regions/flame_masks.npz", "load_region"),
]


@pytest.mark.parametrize("name,reader", FIXTURE_FILES)
@settings(FUZZ, max_examples=15)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_fixture_files(fixtures_dir, workdir, name, reader, cut):
    data = (fixtures_dir / name).read_bytes()
    _read(workdir / f"fixture_{Path(name).name}", data[: int(len(data) * cut)], reader)
