"""Dataset readers on tiny fakes of each layout users hold, with the real shapes (FLAME 5023, BIWI 23370,
Multiface 6172 vertices; Python 2 pickles; 60 fps VOCASET motion), read back exactly; broken files fail clearly."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_close

from mmtalker.audio.io import SAMPLE_RATE, resample_audio
from mmtalker.data.dataset import open_dataset
from mmtalker.errors import MMTalkerError

VOCA_TRAIN = ["FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
              "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
              "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"]
VOCA_VAL = ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"]
VOCA_TEST = ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]
VOCA_RATE = 22000  # raw_audio_fixed.pkl's sample rate


# ------------------------------------------------------------------------------ Python 2 pickles, by hand


def _py2_bytes(data: bytes) -> bytes:
    """A Python 2 ``str``: SHORT_BINSTRING or BINSTRING."""
    return (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))) + data


def _py2_ndarray(arr: np.ndarray) -> bytes:
    """An n-d array the way NumPy under Python 2 pickles it (protocol 2): _reconstruct + BUILD state."""
    arr = np.ascontiguousarray(arr)
    order = b"|" if arr.dtype.itemsize == 1 else b"<"
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in arr.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_bytes(arr.dtype.str[1:].encode()) + b"K\x00K\x01\x87R"
             + b"(K\x03" + _py2_bytes(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_bytes(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89" + _py2_bytes(data) + b"tb")


def _py2_obj(obj) -> bytes:
    if isinstance(obj, dict):
        items = b"".join(_py2_obj(k) + _py2_obj(v) for k, v in obj.items())
        return b"}" + (b"(" + items + b"u" if obj else b"")
    if isinstance(obj, str):
        return _py2_bytes(obj.encode("latin1"))
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return b"J" + struct.pack("<i", int(obj))
    if isinstance(obj, np.ndarray):
        return _py2_ndarray(obj)
    raise TypeError(type(obj))


def write_py2_pickle(path, obj) -> None:
    path.write_bytes(b"\x80\x02" + _py2_obj(obj) + b".")


# ---------------------------------------------------------------------------------------- fake data


@pytest.fixture(scope="module")
def flame(fixtures_dir):
    from mmtalker.mesh.io import load_mesh

    return load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")


def _motion(template: np.ndarray, frames: int, seed: int) -> np.ndarray:
    """(T, V, 3) float32: the template plus a smooth per-frame offset, every frame distinct."""
    rng = np.random.default_rng(seed)
    wobble = rng.normal(scale=1e-3, size=(1, template.shape[0], 3))
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    return (template[None] + wobble * np.sin(0.3 * t + seed)).astype(np.float32)


def _templates(base: np.ndarray, subjects: list[str]) -> dict[str, np.ndarray]:
    return {s: (base + 1e-3 * i).astype(np.float32) for i, s in enumerate(subjects)}


def _write_wav(path, seconds: float, rate: int, seed: int) -> np.ndarray:
    audio = (0.3 * np.random.default_rng(seed).uniform(-1, 1, int(round(seconds * rate)))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return sf.read(str(path), dtype="float32")[0]


def _vocaset_sentences(subject: str) -> list[str]:
    return ["sentence01", "sentence21"] if subject in VOCA_TRAIN else ["sentence21", "sentence22"]


@pytest.fixture(scope="module")
def vocaset_raw(tmp_path_factory, flame, fixtures_dir):
    """The release layout: all 12 subjects, 2 sentences each, 6-9 frames at 60 fps, int16 and float audio."""
    root = tmp_path_factory.mktemp("vocaset_raw")
    subjects = VOCA_TRAIN + VOCA_VAL + VOCA_TEST
    templates = _templates(flame.vertices, subjects)
    rows, index, audio, expected = [], {}, {}, {}
    for i, subject in enumerate(subjects):
        index[subject], audio[subject] = {}, {}
        for j, sentence in enumerate(_vocaset_sentences(subject)):
            frames = 6 + (i + j) % 4
            verts = _motion(templates[subject], frames, seed=10 * i + j)
            start = sum(len(r) for r in rows)
            index[subject][sentence] = {f + 1: start + f for f in range(frames)}  # VOCASET numbers frames from 1
            rows.append(verts)
            n = int(round(frames / 60 * VOCA_RATE))
            wave = np.random.default_rng(i * 7 + j).uniform(-0.5, 0.5, n)
            stored = wave.astype(np.float32) if i % 2 else np.round(wave * 32767).astype(np.int16)
            audio[subject][sentence] = {"audio": stored, "sample_rate": VOCA_RATE}
            expected[f"{subject}_{sentence}"] = (verts, stored)
    np.save(root / "data_verts.npy", np.concatenate(rows))
    write_py2_pickle(root / "subj_seq_to_idx.pkl", index)
    write_py2_pickle(root / "raw_audio_fixed.pkl", audio)
    write_py2_pickle(root / "templates.pkl", templates)
    masks = np.load(fixtures_dir / "regions" / "flame_masks.npz")
    write_py2_pickle(root / "FLAME_masks.pkl", {k: masks[k].astype(np.int64) for k in masks.files})
    (root / "templates").mkdir()
    shutil.copy(fixtures_dir / "meshes" / "flame_sample.ply", root / "templates" / "FLAME_sample.ply")
    return root, templates, expected


def _processed(root, templates, plan, stored_fps, rate, flat=True, pickle_templates=True):
    """vertices_npy/<key>.npy (flattened or (T, V, 3)) + wav/<key>.wav + templates.pkl. plan: key -> subject, frames."""
    expected = {}
    for n, (key, (subject, frames)) in enumerate(plan.items()):
        verts = _motion(templates[subject], frames, seed=n)
        (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
        np.save(root / "vertices_npy" / f"{key}.npy", verts.reshape(frames, -1) if flat else verts)
        wave = _write_wav(root / "wav" / f"{key}.wav", frames / stored_fps, rate, seed=n)
        expected[key] = (verts, wave)
    if pickle_templates:
        write_py2_pickle(root / "templates.pkl", {s: v.reshape(-1) for s, v in templates.items()})
    return expected


@pytest.fixture(scope="module")
def biwi(tmp_path_factory):
    """BIWI processed: 23370 vertices, 25 fps, both file-name forms (F2_e37, M3_38), 44.1 kHz wav."""
    root = tmp_path_factory.mktemp("biwi")
    base = np.random.default_rng(0).normal(scale=100.0, size=(23370, 3)).astype(np.float32)  # millimetres
    templates = _templates(base, ["F1", "F2", "M3"])
    plan = {"F2_e01": ("F2", 5), "F2_e37": ("F2", 4), "M3_33": ("M3", 6), "M3_38": ("M3", 5), "F1_e40": ("F1", 3)}
    expected = _processed(root, templates, plan, 25, 44100)
    (root / "wav" / "F2_e02.wav").write_bytes((root / "wav" / "F2_e01.wav").read_bytes())  # audio without motion
    return root, templates, expected


# ---------------------------------------------------------------------------------------- VOCASET raw


def test_vocaset_raw_reads_back_exactly(vocaset_raw):
    root, templates, expected = vocaset_raw
    ds = open_dataset(root)
    assert ds.manifest.layout == "vocaset_raw" and ds.manifest.fps == 30 and ds.manifest.stored_fps == 60
    assert len(ds) == 24 and ds.subjects == VOCA_TRAIN + VOCA_VAL + VOCA_TEST  # the preset's order
    for seq in ds.sequences():
        verts, stored = expected[seq.key]
        out = seq.vertices()
        assert out.dtype == np.float32 and out.shape == (seq.num_frames, 5023, 3)
        np.testing.assert_array_equal(out, verts[::2])  # 60 -> 30 fps keeps every other frame exactly
        audio = seq.audio()
        scale = 32768.0 if stored.dtype == np.int16 else 1.0
        assert audio.dtype == np.float32 and audio.shape == (round(len(stored) * SAMPLE_RATE / VOCA_RATE),)
        assert_close(audio, resample_audio(stored.astype(np.float64) / scale, VOCA_RATE, SAMPLE_RATE), atol=1e-6)
        assert seq.alignment() is None and seq.oracle() is None
    for subject in ds.subjects:
        np.testing.assert_array_equal(ds.template(subject), templates[subject])


def test_vocaset_raw_standard_split_and_fps_override(vocaset_raw):
    root, _, expected = vocaset_raw
    ds = open_dataset(root, fps=60)
    train, val, test = (ds.sequences(s) for s in ("train", "val", "test"))
    assert {s.subject for s in train} == set(VOCA_TRAIN) and len(train) == 16  # sentences 1 and 21
    assert [s.key for s in test] == [f"{s}_sentence{n}" for s in sorted(VOCA_TEST) for n in (21, 22)]
    assert {s.subject for s in val} == set(VOCA_VAL) and len(val) == 4
    seq = test[0]
    out = seq.vertices()
    assert isinstance(out, np.memmap)  # served at the stored rate: rows of data_verts.npy, not a copy
    np.testing.assert_array_equal(out, expected[seq.key][0])


def test_vocaset_regions_and_topology(vocaset_raw, fixtures_dir):
    root, _, _ = vocaset_raw
    ds = open_dataset(root)
    masks = np.load(fixtures_dir / "regions" / "flame_masks.npz")
    lips = ds.region("lips")
    assert lips.dtype == np.int64 and len(lips) == 250  # 254 entries, 250 unique
    np.testing.assert_array_equal(ds.region("upper_face"), np.union1d(masks["forehead"], masks["eye_region"]))
    mesh = ds.topology()
    assert mesh.vertices.shape == (5023, 3) and mesh.faces.shape == (9976, 3)
    with pytest.raises(MMTalkerError, match="lve.txt: region file for .lve. not found"):
        ds.region("lve")  # named by the preset, absent from this folder
    with pytest.raises(MMTalkerError, match="not defined"):
        ds.region("cheeks")


def _copy_raw(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_vocaset_raw_truncated_verts(vocaset_raw, tmp_path):
    root = _copy_raw(vocaset_raw[0], tmp_path / "v")
    path = root / "data_verts.npy"
    path.write_bytes(path.read_bytes()[: -5023 * 12 * 3])  # three frames short
    with pytest.raises(MMTalkerError, match="corrupt or truncated"):
        open_dataset(root)


def test_vocaset_raw_index_past_end_and_missing_audio(vocaset_raw, tmp_path):
    root = _copy_raw(vocaset_raw[0], tmp_path / "v")
    write_py2_pickle(root / "subj_seq_to_idx.pkl", {VOCA_TEST[0]: {"sentence21": {1: 0, 2: 10**6}}})
    with pytest.raises(MMTalkerError, match=r"has only \d+ rows"):
        open_dataset(root)
    write_py2_pickle(root / "subj_seq_to_idx.pkl", {VOCA_TEST[0]: {"sentence40": {1: 0, 2: 1}}})
    with pytest.raises(MMTalkerError, match="motion but no audio"):
        open_dataset(root)


def test_vocaset_raw_duration_mismatch(vocaset_raw, tmp_path):
    root = _copy_raw(vocaset_raw[0], tmp_path / "v")
    subject = VOCA_TEST[0]
    write_py2_pickle(root / "subj_seq_to_idx.pkl", {subject: {"sentence21": {1: 0, 2: 1, 3: 2}}})
    long = {"audio": np.zeros(3 * VOCA_RATE, np.int16), "sample_rate": VOCA_RATE}
    write_py2_pickle(root / "raw_audio_fixed.pkl", {subject: {"sentence21": long}})
    with pytest.raises(MMTalkerError, match=r"audio lasts 3\.000 s but the motion 0\.050 s"):
        open_dataset(root)


# ---------------------------------------------------------------------------------- processed layouts


@pytest.fixture(scope="module")
def vocaset_processed(tmp_path_factory, flame):
    root = tmp_path_factory.mktemp("vocaset_processed")
    subjects = [VOCA_TRAIN[0], VOCA_TEST[1], VOCA_VAL[0]]
    templates = _templates(flame.vertices, subjects)
    plan = {f"{s}_sentence{n:02d}": (s, 8 + n % 3) for s in subjects for n in (2, 21, 22)}
    expected = _processed(root, templates, plan, 60, 22000)
    splits = tmp_path_factory.mktemp("splits") / "mine.json"
    splits.write_text(json.dumps({"train": {"subjects": subjects[:1], "sentences": ["1-40"]},
                                  "test": {"subjects": subjects[1:], "sentences": [21]}}))
    return root, templates, expected, splits


def test_motion_or_a_template_in_other_units_is_refused_naming_it(vocaset_processed, tmp_path):
    """One motion file (or one subject's template) in millimetres among metres trained to nonsense without a word."""
    from mmtalker.data.safe_pickle import load_pickle

    root = Path(shutil.copytree(vocaset_processed[0], tmp_path / "data"))
    assert len(open_dataset(root, "vocaset")) == 9  # as made: every file in metres
    key = f"{VOCA_TEST[1]}_sentence21"
    npy = root / "vertices_npy" / f"{key}.npy"
    whole = np.load(npy)
    np.save(npy, whole * 1000.0)
    with pytest.raises(MMTalkerError, match=rf"{key}.npy: is 1e\+03× the size of the template of {VOCA_TEST[1]}"):
        open_dataset(root, "vocaset")
    np.save(npy, whole)
    templates = load_pickle(root / "templates.pkl")
    write_py2_pickle(root / "templates.pkl", {s: v * (1000.0 if s == VOCA_VAL[0] else 1.0) for s, v in templates.items()})
    with pytest.raises(MMTalkerError, match=rf"templates.pkl \[{VOCA_VAL[0]}\]: is 1e\+03× the size of the median"):
        open_dataset(root, "vocaset")


def test_processed_needs_a_preset(vocaset_processed):
    with pytest.raises(MMTalkerError, match=r"--preset biwi\|multiface\|vocaset"):
        open_dataset(vocaset_processed[0])


def test_processed_vocaset_reads_back_exactly(vocaset_processed):
    root, templates, expected, splits = vocaset_processed
    ds = open_dataset(root, preset="vocaset", splits=splits)
    assert len(ds) == 9
    for seq in ds.sequences():
        verts, wave = expected[seq.key]
        assert seq.subject in templates and seq.sentence.startswith("sentence")
        np.testing.assert_array_equal(seq.vertices(), verts[::2])
        assert_close(seq.audio(), resample_audio(wave, 22000, SAMPLE_RATE), atol=1e-6)
    assert [s.key for s in ds.sequences("test")] == [f"{VOCA_TEST[1]}_sentence21", f"{VOCA_VAL[0]}_sentence21"]
    assert len(ds.sequences("train")) == 3


def test_processed_vocaset_standard_split_names_missing_subjects(vocaset_processed):
    ds = open_dataset(vocaset_processed[0], preset="vocaset")
    with pytest.raises(MMTalkerError, match="FaceTalk_170904_00128_TA") as info:
        ds.sequences("train")
    assert "--splits" in str(info.value)
    with pytest.raises(MMTalkerError, match="available: train, val, test"):
        ds.sequences("dev")


def test_biwi_both_name_forms_and_test_split(biwi, tmp_path):
    root, templates, expected = biwi
    ds = open_dataset(root, preset="biwi")
    assert ds.subjects == ["F1", "F2", "M3"] and len(ds) == 5  # the wav without motion is not a sequence
    seq = ds.sequence("F2_e37")
    assert (seq.subject, seq.sentence, seq.sentence_number, seq.fps) == ("F2", "e37", 37, 25)
    for s in ds.sequences():
        np.testing.assert_array_equal(s.vertices(), expected[s.key][0])  # 25 fps stored and served
        assert isinstance(s.vertices(), np.memmap)
    assert ds.template("M3").shape == (23370, 3)
    with pytest.raises(MMTalkerError, match="F3, F4"):
        ds.sequences("test")  # Test-A needs all six subjects
    mine = tmp_path / "a.json"
    mine.write_text(json.dumps({"test": {"subjects": ["F2", "M3"], "sentences": ["37-40"]},
                                "test_b": {"subjects": ["F1"], "sentences": ["37-40"]}}))
    ds = open_dataset(root, preset="biwi", splits=mine)
    assert [s.key for s in ds.sequences("test")] == ["F2_e37", "M3_38"]
    assert [s.key for s in ds.sequences("test_b")] == ["F1_e40"]
    ds = open_dataset(root, preset="biwi", fps=50)
    np.testing.assert_array_equal(ds.sequence("M3_33").vertices()[::2], expected["M3_33"][0])


def test_multiface(tmp_path):
    rng = np.random.default_rng(3)
    subjects = ["m--20180227--0000--6795937--GHS", "m--20180426--0000--002643814--GHS"]
    templates = _templates(rng.uniform(-1, 1, size=(6172, 3)), subjects)
    plan = {f"{s}_{n:02d}": (s, 5) for s in subjects for n in (1, 41, 46)}
    expected = _processed(tmp_path, templates, plan, 30, 48000, flat=False)
    ds = open_dataset(tmp_path, preset="multiface")
    assert ds.subjects == sorted(subjects)
    assert [s.sentence_number for s in ds.sequences("val")] == [41, 41]
    assert [s.sentence for s in ds.sequences("test")] == ["46", "46"]
    for s in ds.sequences("train"):
        np.testing.assert_array_equal(s.vertices(), expected[s.key][0])


# -------------------------------------------------------------------------------- clear errors


def _small(tmp_path, flame, **kw):
    templates = _templates(flame.vertices, ["FaceTalk_170728_03272_TA"])
    plan = {"FaceTalk_170728_03272_TA_sentence01": ("FaceTalk_170728_03272_TA", 6)}
    _processed(tmp_path, templates, plan, 60, 16000, **kw)
    return tmp_path / "vertices_npy" / "FaceTalk_170728_03272_TA_sentence01.npy"


def test_missing_wav(tmp_path, flame):
    npy = _small(tmp_path, flame)
    (tmp_path / "wav" / "FaceTalk_170728_03272_TA_sentence01.wav").unlink()
    with pytest.raises(MMTalkerError, match="has no audio") as info:
        open_dataset(tmp_path, preset="vocaset")
    assert str(npy) in str(info.value)


def test_truncated_npy(tmp_path, flame):
    npy = _small(tmp_path, flame)
    npy.write_bytes(npy.read_bytes()[:-100])
    with pytest.raises(MMTalkerError, match="corrupt or truncated") as info:
        open_dataset(tmp_path, preset="vocaset")
    assert str(npy) in str(info.value)
    npy.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(MMTalkerError, match="corrupt or truncated"):
        open_dataset(tmp_path, preset="vocaset")


def test_vertex_count_mismatch(tmp_path, flame):
    npy = _small(tmp_path, flame)
    np.save(npy, np.zeros((6, 5000 * 3), np.float32))
    with pytest.raises(MMTalkerError, match="has 5000 vertices per frame, the dataset has 5023"):
        open_dataset(tmp_path, preset="vocaset")


def test_template_count_mismatch(tmp_path, flame):
    _small(tmp_path, flame)
    write_py2_pickle(tmp_path / "templates.pkl", {"FaceTalk_170728_03272_TA": np.zeros((5000, 3), np.float32)})
    with pytest.raises(MMTalkerError, match=r"template of shape \(5000, 3\), expected \(5023, 3\)"):
        open_dataset(tmp_path, preset="vocaset")


def test_missing_templates(tmp_path, flame):
    _small(tmp_path, flame, pickle_templates=False)
    with pytest.raises(MMTalkerError, match="templates file not found"):
        open_dataset(tmp_path, preset="vocaset")
    write_py2_pickle(tmp_path / "templates.pkl", {"FaceTalk_170725_00137_TA": flame.vertices})
    with pytest.raises(MMTalkerError, match="no template for subject.*FaceTalk_170728_03272_TA"):
        open_dataset(tmp_path, preset="vocaset")


def test_duration_mismatch(tmp_path, flame):
    _small(tmp_path, flame)
    _write_wav(tmp_path / "wav" / "FaceTalk_170728_03272_TA_sentence01.wav", 2.0, 16000, seed=0)
    with pytest.raises(MMTalkerError, match="audio lasts 2.000 s but the motion 0.100 s"):
        open_dataset(tmp_path, preset="vocaset")


def test_empty_and_unknown_folders(tmp_path, flame):
    (tmp_path / "vertices_npy").mkdir()
    write_py2_pickle(tmp_path / "templates.pkl", {"FaceTalk_170728_03272_TA": flame.vertices})
    with pytest.raises(MMTalkerError, match="holds no sequences"):
        open_dataset(tmp_path, preset="vocaset")
    with pytest.raises(MMTalkerError, match="not a dataset folder"):
        open_dataset(tmp_path / "vertices_npy")
    with pytest.raises(MMTalkerError, match="no such folder.*mmtalker data synth --out .*nowhere"):
        open_dataset(tmp_path / "nowhere")
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text("{}")
    with pytest.raises(MMTalkerError, match="is a training run's folder, not a dataset.*best"):
        open_dataset(run)
    with pytest.raises(MMTalkerError, match="fps"):
        open_dataset(tmp_path, preset="vocaset", fps=0)


def test_unknown_subject_in_file_names(tmp_path, flame):
    _small(tmp_path, flame)
    shutil.copy(tmp_path / "vertices_npy" / "FaceTalk_170728_03272_TA_sentence01.npy", tmp_path / "vertices_npy" / "Bob_s01.npy")
    shutil.copy(tmp_path / "wav" / "FaceTalk_170728_03272_TA_sentence01.wav", tmp_path / "wav" / "Bob_s01.wav")
    with pytest.raises(MMTalkerError, match="not in the manifest: Bob"):
        open_dataset(tmp_path, preset="vocaset")


def test_vocaset_raw_rows_out_of_order_and_pickled_sequences(vocaset_raw, tmp_path):
    import pickle

    root = _copy_raw(vocaset_raw[0], tmp_path / "v")
    write_py2_pickle(root / "subj_seq_to_idx.pkl", {VOCA_TEST[0]: {"sentence21": {3: 4, 1: 5, 2: 3}}})
    write_py2_pickle(root / "templates.pkl", {VOCA_TEST[0]: vocaset_raw[1][VOCA_TEST[0]]})
    seq = open_dataset(root, fps=60).sequence(f"{VOCA_TEST[0]}_sentence21")
    all_rows = np.load(root / "data_verts.npy")
    np.testing.assert_array_equal(seq.vertices(), all_rows[[5, 3, 4]])  # in frame-number order
    again = pickle.loads(pickle.dumps(seq))  # what DataLoader workers receive: no memory map inside
    np.testing.assert_array_equal(again.vertices(), all_rows[[5, 3, 4]])
    assert len(pickle.dumps(seq)) < 100_000


def test_user_manifest_with_per_subject_template_meshes(tmp_path, flame, fixtures_dir):
    """A processed folder described by a hand-written manifest.json: templates as one mesh file per subject."""
    templates = {"anna": flame.vertices}
    expected = _processed(tmp_path, templates, {"anna_take3": ("anna", 4)}, 50, 16000, pickle_templates=False)
    (tmp_path / "meshes").mkdir()
    shutil.copy(fixtures_dir / "meshes" / "flame_sample.ply", tmp_path / "meshes" / "anna.ply")
    manifest = {"name": "mine", "layout": "processed", "fps": 25, "stored_fps": 50, "num_vertices": 5023,
                "templates": {"anna": "meshes/anna.ply"}, "topology": "meshes/anna.ply",
                "splits": {"all": {"subjects": ["anna"], "sentences": [3]}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    ds = open_dataset(tmp_path)
    (seq,) = ds.sequences("all")
    assert (seq.subject, seq.sentence, seq.fps, seq.num_frames) == ("anna", "take3", 25, 2)
    np.testing.assert_array_equal(seq.vertices(), expected["anna_take3"][0][::2])
    np.testing.assert_array_equal(ds.template("anna"), flame.vertices)
    assert ds.topology().faces.shape == (9976, 3)
