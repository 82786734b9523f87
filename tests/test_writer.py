"""DatasetWriter: the native format written and read back exactly; user folders are never clobbered."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import assert_close

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.data.dataset import open_dataset
from mmtalker.data.writer import DatasetWriter
from mmtalker.errors import MMTalkerError


@dataclass
class Phone:  # the shape of synth.speech.Phone
    symbol: str
    start: float
    end: float
    stress: int
    word: int


@pytest.fixture(scope="module")
def flame(fixtures_dir):
    from mmtalker.mesh.io import load_mesh

    return load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")


def _clip(seed: int, frames: int, template: np.ndarray, fps: float = 30):
    rng = np.random.default_rng(seed)
    audio = rng.uniform(-0.5, 0.5, int(round(frames / fps * SAMPLE_RATE))).astype(np.float32)
    verts = (template[None] + rng.normal(scale=1e-3, size=(frames,) + template.shape)).astype(np.float32)
    return audio, verts


def _write(root, flame, fps=30, **finish):
    w = DatasetWriter(root)
    expected = {}
    for i, subject in enumerate(["s01", "s02"]):
        template = flame.vertices + 0.01 * i
        w.set_template(subject, template)
        for j, sentence in enumerate(["train001", "train002", "test003"]):
            audio, verts = _clip(10 * i + j, 7 + j, template, fps)
            phones = [Phone("_", 0.0, 0.1, 0, -1), Phone("a", 0.1, audio.size / SAMPLE_RATE, 1, 0)]
            oracle = verts + np.float32(1e-4) if j == 0 else None
            key = w.add_sequence(subject, sentence, audio, verts, alignment=phones if j < 2 else None, oracle=oracle)
            expected[key] = (audio, verts, phones if j < 2 else None, oracle)
    w.set_topology(flame)
    w.set_region("lips", np.array([3, 1, 2, 3]))
    w.set_region("eye_region", np.arange(100, 120))
    splits = {"train": {"subjects": "*", "sentences": ["1-2"]}, "test": {"keys": ["s01_test003", "s02_test003"]}}
    manifest = w.finish(name="toy", fps=30, splits=splits, units={"length": "m", "report_scale": 1e5},
                        extra={"oracle_lve": 1.25e-6}, **finish)
    return manifest, expected


def test_round_trip(tmp_path, flame):
    manifest, expected = _write(tmp_path / "ds", flame)
    ds = open_dataset(tmp_path / "ds")
    assert ds.manifest == manifest
    assert (ds.manifest.layout, ds.manifest.num_vertices, ds.subjects) == ("native", 5023, ["s01", "s02"])
    assert ds.manifest.extra == {"oracle_lve": 1.25e-6}
    assert len(ds) == 6
    for seq in ds.sequences():
        audio, verts, phones, oracle = expected[seq.key]
        out = seq.vertices()
        assert isinstance(out, np.memmap) and out.dtype == np.float32
        np.testing.assert_array_equal(out, verts)
        assert_close(seq.audio(), audio, atol=1.0 / 32768, what="16-bit audio")
        assert seq.alignment() == (None if phones is None else [p.__dict__ for p in phones])
        if oracle is None:
            assert seq.oracle() is None
        else:
            np.testing.assert_array_equal(seq.oracle(), oracle)
    assert [s.key for s in ds.sequences("test")] == ["s01_test003", "s02_test003"]
    assert len(ds.sequences("train")) == 4
    np.testing.assert_array_equal(ds.template("s02"), (flame.vertices + 0.01).astype(np.float32))
    np.testing.assert_array_equal(ds.region("lips"), [1, 2, 3])
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "ds" / "regions" / "lips.txt", dtype=np.int64), [3, 1, 2, 3])
    topo = ds.topology()
    np.testing.assert_array_equal(topo.faces, flame.faces)
    np.testing.assert_array_equal(topo.vertices, flame.vertices)


def test_served_fps_converts_motion_and_oracle(tmp_path, flame):
    _, expected = _write(tmp_path / "ds", flame, fps=60, stored_fps=60)
    ds = open_dataset(tmp_path / "ds", fps=30)
    seq = ds.sequence("s01_train001")
    np.testing.assert_array_equal(seq.vertices(), expected["s01_train001"][1][::2])
    np.testing.assert_array_equal(seq.oracle(), expected["s01_train001"][3][::2])


def test_manifest_written_last_and_preset_refused(tmp_path, flame):
    w = DatasetWriter(tmp_path / "ds")
    w.set_template("a", flame.vertices)
    audio, verts = _clip(0, 5, flame.vertices)
    w.add_sequence("a", "s1", audio, verts)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    w.finish(name="t", fps=30)
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["layout"] == "native"
    with pytest.raises(MMTalkerError, match="already finished"):
        w.add_sequence("a", "s2", audio, verts)
    with pytest.raises(MMTalkerError, match="preset does not apply"):
        open_dataset(tmp_path / "ds", preset="vocaset")


def test_refuses_non_empty_folders(tmp_path, flame):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(MMTalkerError, match="not empty"):
        DatasetWriter(user)
    with pytest.raises(MMTalkerError, match="not part of an mmtalker dataset"):
        DatasetWriter(user, overwrite=True)
    assert (user / "thesis.tex").read_text() == "precious"
    _write(tmp_path / "ds", flame)
    with pytest.raises(MMTalkerError, match="not empty"):
        DatasetWriter(tmp_path / "ds")
    w = DatasetWriter(tmp_path / "ds", overwrite=True)  # a previous dataset of ours may be replaced
    assert not (tmp_path / "ds" / "manifest.json").exists()
    assert not list((tmp_path / "ds" / "vertices_npy").iterdir())
    w.set_template("a", flame.vertices)
    w.add_sequence("a", "s1", *_clip(0, 5, flame.vertices))
    w.finish(name="t", fps=30)
    assert len(open_dataset(tmp_path / "ds")) == 1


def test_bad_input_is_refused(tmp_path, flame):
    w = DatasetWriter(tmp_path / "ds")
    audio, verts = _clip(0, 6, flame.vertices)
    with pytest.raises(MMTalkerError, match="no sequences"):
        w.finish(name="t", fps=30)
    w.add_sequence("a", "s1", audio, verts)
    with pytest.raises(MMTalkerError, match="already added"):
        w.add_sequence("a", "s1", audio, verts)
    with pytest.raises(MMTalkerError, match="has 5000 vertices, the dataset 5023"):
        w.add_sequence("a", "s2", audio, verts[:, :5000])
    with pytest.raises(MMTalkerError, match=r"\(T, V, 3\)"):
        w.add_sequence("a", "s3", audio, verts[0])
    bad = verts.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(MMTalkerError, match="NaN"):
        w.add_sequence("a", "s4", audio, bad)
    with pytest.raises(MMTalkerError, match="no spaces or slashes"):
        w.add_sequence("a/b", "s5", audio, verts)
    with pytest.raises(MMTalkerError, match="out of range"):
        w.set_region("lips", np.array([0, 5023]))
    with pytest.raises(MMTalkerError, match="no template for subject"):
        w.finish(name="t", fps=30)
    w.set_template("a", flame.vertices)
    w.add_sequence("a", "s6", audio[: len(audio) // 4], verts)
    with pytest.raises(MMTalkerError, match="audio lasts"):
        w.finish(name="t", fps=30)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_overwrite_clears_only_a_folder_mmtalker_wrote(tmp_path):
    """A folder laid out like a dataset (wav/, regions/) but with no manifest or marker of ours is the user's own:
    --overwrite refuses it; a dataset the writer began (its marker is written first) may be cleared."""
    from mmtalker.data.writer import MARKER_FILE, _prepare_folder, is_ours_started
    from mmtalker.errors import MMTalkerError

    mine = tmp_path / "mine"
    (mine / "wav").mkdir(parents=True)
    (mine / "wav" / "interview.wav").write_bytes(b"RIFF")
    with pytest.raises(MMTalkerError, match="made by someone else"):
        _prepare_folder(mine, overwrite=True)
    assert (mine / "wav" / "interview.wav").is_file()
    ours = tmp_path / "ours"
    _prepare_folder(ours, overwrite=False)
    assert is_ours_started(ours) and (ours / MARKER_FILE).is_file()
    (ours / "wav" / "a.wav").write_bytes(b"RIFF")  # interrupted before its manifest
    _prepare_folder(ours, overwrite=True)
    assert not (ours / "wav" / "a.wav").exists() and is_ours_started(ours)
