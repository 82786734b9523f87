"""mmtalker.data.regions: FLAME masks (pkl/npz), region txt files, weight masks; duplicates counted."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mmtalker.data.regions import Region, load_region, load_region_sets
from mmtalker.errors import MMTalkerError


def _naive_unique(values):
    seen = sorted(set(int(v) for v in values))
    return np.array(seen, dtype=np.int64), len(values) - len(seen)


def test_flame_masks_npz_lips(fixtures_dir):
    path = fixtures_dir / "regions" / "flame_masks.npz"
    raw = np.load(path)["lips"]
    region = load_region(path, "lips")
    assert isinstance(region, Region) and region.name == "lips"
    assert len(raw) == 254 and len(region) == 250 and region.duplicates == 4
    expected, dup = _naive_unique(raw)
    assert np.array_equal(region.indices, expected) and dup == region.duplicates
    assert region.indices.dtype == np.int64
    assert region.source.endswith("flame_masks.npz[lips]")


def test_flame_masks_sets(fixtures_dir):
    sets = load_region_sets(fixtures_dir / "regions" / "flame_masks.npz", num_vertices=5023)
    assert {"lips", "eye_region", "forehead", "left_eyeball"} <= set(sets)
    assert len(sets["eye_region"]) == 751 and len(sets["forehead"]) == 133
    assert all(r.name == k for k, r in sets.items())


@pytest.mark.parametrize("name,count", [("vocaset_lve.txt", 428), ("vocaset_fdd.txt", 1501)])
def test_vocaset_txt(fixtures_dir, name, count):
    path = fixtures_dir / "regions" / name
    region = load_region(path, num_vertices=5023)
    assert len(region) == count and region.duplicates == 0 and region.name == path.stem
    expected, _ = _naive_unique(path.read_text().strip().split(","))
    assert np.array_equal(region.indices, expected)
    assert list(load_region_sets(path)) == [path.stem]


def test_flame_masks_pkl_protocol2(tmp_path, fixtures_dir):
    """FLAME_masks.pkl as users have it (a protocol-2 pickle of a dict of arrays), built from the npz."""
    npz = np.load(fixtures_dir / "regions" / "flame_masks.npz")
    path = tmp_path / "FLAME_masks.pkl"
    path.write_bytes(pickle.dumps({k: npz[k] for k in npz.files}, protocol=2))
    sets = load_region_sets(path)
    assert list(sets) == list(npz.files)
    for key in npz.files:
        expected, dup = _naive_unique(npz[key])
        assert np.array_equal(sets[key].indices, expected) and sets[key].duplicates == dup, key
    lips = load_region(path, "lips")
    assert len(lips) == 250 and lips.duplicates == 4


@pytest.mark.parametrize("text", ["5, 3, 9, 3", "5,3,9,3\n", "5 3\n9\n3", "5;3;9;3", "  5,\t3,\n9, 3,\n"])
def test_text_separators(tmp_path, text):
    path = tmp_path / "r.txt"
    path.write_text(text)
    region = load_region(path)
    assert region.indices.tolist() == [3, 5, 9] and region.duplicates == 1


def test_weight_masks_thresholded(tmp_path):
    weights = np.array([0.0, 0.2, 0.5, 0.9, 1.0, 0.49], dtype=np.float32)
    np.save(tmp_path / "w.npy", weights)
    assert load_region(tmp_path / "w.npy").indices.tolist() == [2, 3, 4]
    assert load_region(tmp_path / "w.npy", threshold=0.1).indices.tolist() == [1, 2, 3, 4, 5]
    np.savez(tmp_path / "m.npz", mouth=weights, eyes=np.array([True, False, True, False, False, False]))
    sets = load_region_sets(tmp_path / "m.npz", threshold=0.95)
    assert sets["mouth"].indices.tolist() == [4] and sets["eyes"].indices.tolist() == [0, 2]
    (tmp_path / "w.txt").write_text("0.0 1.0 1.0 0.0 0.75\n")
    assert load_region(tmp_path / "w.txt").indices.tolist() == [1, 2, 4]
    with pytest.raises(MMTalkerError, match="no vertex has weight"):
        load_region(tmp_path / "w.npy", threshold=1.5)
    assert len(load_region(tmp_path / "w.npy", num_vertices=6)) == 3
    with pytest.raises(MMTalkerError, match="mask of 6 entries for a mesh of 7 vertices"):
        load_region(tmp_path / "w.npy", num_vertices=7)


def test_integer_zero_one_arrays_are_masks(tmp_path):
    np.save(tmp_path / "m.npy", np.array([0, 1, 1, 0, 1], dtype=np.int64))
    assert load_region(tmp_path / "m.npy").indices.tolist() == [1, 2, 4]
    (tmp_path / "two.txt").write_text("0, 1")  # two entries: an index list
    assert load_region(tmp_path / "two.txt").indices.tolist() == [0, 1]


def test_whole_float_indices_and_column_arrays(tmp_path):
    np.save(tmp_path / "f.npy", np.array([10.0, 2.0, 10.0]))
    region = load_region(tmp_path / "f.npy")
    assert region.indices.tolist() == [2, 10] and region.duplicates == 1
    np.save(tmp_path / "c.npy", np.array([[4], [7]], dtype=np.int32))
    assert load_region(tmp_path / "c.npy").indices.tolist() == [4, 7]


def _bad(tmp_path, content, name="r.txt"):
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    "content,problem",
    [
        ("1, -2, 3", "negative vertex index -2"),
        ("1.5, 2, 30", "non-integer vertex index 1.5"),
        ("", "empty"),
        ("  \n", "empty"),
        ("1, two, 3", "'two' is not a number"),
        ("1, nan, 3", "NaN or infinite"),
        ("1, 99999999999999999999999", "far too large"),
    ],
)
def test_bad_text(tmp_path, content, problem):
    path = _bad(tmp_path, content)
    with pytest.raises(MMTalkerError, match=problem) as err:
        load_region(path)
    assert str(path) in str(err.value)


def test_out_of_range_and_keys(tmp_path, fixtures_dir):
    path = fixtures_dir / "regions" / "vocaset_fdd.txt"
    with pytest.raises(MMTalkerError, match="out of range for a mesh of 100 vertices"):
        load_region(path, num_vertices=100)
    npz = fixtures_dir / "regions" / "flame_masks.npz"
    with pytest.raises(MMTalkerError, match="no region named 'lipz'.*available: .*lips"):
        load_region(npz, "lipz")
    with pytest.raises(MMTalkerError, match="say which one.*eye_region"):
        load_region(npz)
    with pytest.raises(MMTalkerError, match="single region"):
        load_region(path, "lips")
    np.savez(tmp_path / "one.npz", only=np.array([1, 2]))
    assert load_region(tmp_path / "one.npz").name == "only"


def test_bad_containers(tmp_path):
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({"lips": "not indices"}, protocol=2))
    with pytest.raises(MMTalkerError, match=r"s.pkl\[lips\].*not a list of vertex indices"):
        load_region_sets(tmp_path / "s.pkl")
    (tmp_path / "e.pkl").write_bytes(pickle.dumps({}, protocol=2))
    with pytest.raises(MMTalkerError, match="no regions"):
        load_region_sets(tmp_path / "e.pkl")
    np.save(tmp_path / "grid.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(MMTalkerError, match="shape"):
        load_region(tmp_path / "grid.npy")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MMTalkerError, match="bad.npz"):
        load_region(tmp_path / "bad.npz")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(MMTalkerError, match="binary"):
        load_region(tmp_path / "bin.txt")
    with pytest.raises(MMTalkerError, match="no such file"):
        load_region(tmp_path / "missing.txt")
