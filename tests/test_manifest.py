"""Manifest: JSON round trip, strict key and type checks that name the file and key, presets, split files."""

from __future__ import annotations

import json

import pytest

from mmtalker.data.dataset import load_preset, preset_names
from mmtalker.data.manifest import Manifest, Split, load_splits
from mmtalker.errors import MMTalkerError

BASE = {"name": "toy", "layout": "native", "fps": 30, "num_vertices": 5}


def _write(tmp_path, data, name="manifest.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_minimal_manifest_gets_defaults(tmp_path):
    m = Manifest.load(_write(tmp_path, BASE))
    assert (m.name, m.layout, m.fps, m.stored_fps, m.num_vertices) == ("toy", "native", 30.0, 30.0, 5)
    assert m.splits == {} and m.regions == {} and m.topology == [] and m.templates is None
    assert m.units == {"length": "m", "report_scale": 1.0}


def test_full_manifest_round_trips(tmp_path):
    data = dict(
        BASE,
        stored_fps=60,
        topology="topology.obj",
        templates={"a": "a.ply", "b": "b.ply"},
        regions={"lips": "regions/lips.txt", "eyes": {"file": "masks.pkl", "key": "eye_region"},
                 "upper": {"union": ["lips", "eyes"]}},
        splits={"train": {"subjects": ["a"], "sentences": [1, 2, "5-7", 3]},
                "test": {"keys": ["b_s01"]}, "all": {"subjects": "*"}},
        subjects=["a", "b"],
        units={"length": "mm", "report_scale": 1e4},
        extra={"oracle_lve": 1.5e-5, "nested": {"x": [1, 2]}},
        duration_tolerance=0.25,
        source="made by hand",
    )
    m = Manifest.load(_write(tmp_path, data))
    assert m.splits["train"] == Split(subjects=["a"], sentences=[1, 2, 3, 5, 6, 7])
    assert m.splits["test"].keys == ["b_s01"] and m.splits["all"].subjects == "*"
    assert m.topology == ["topology.obj"] and m.stored_fps == 60.0
    m.save(tmp_path / "again.json")
    again = Manifest.load(tmp_path / "again.json")
    assert again == m
    assert json.loads((tmp_path / "again.json").read_text())["splits"]["train"]["sentences"] == ["1-3", "5-7"]


def test_save_refuses_to_overwrite(tmp_path):
    m = Manifest.load(_write(tmp_path, BASE))
    with pytest.raises(MMTalkerError, match="already exists"):
        m.save(tmp_path / "manifest.json")
    m.save(tmp_path / "manifest.json", overwrite=True)


@pytest.mark.parametrize(
    "change,key",
    [
        ({"fsp": 30}, "fsp"),
        ({"fps": "30"}, "fps"),
        ({"fps": -1}, "fps"),
        ({"num_vertices": 5.5}, "num_vertices"),
        ({"num_vertices": True}, "num_vertices"),
        ({"layout": "mine"}, "layout"),
        ({"templates": 3}, "templates"),
        ({"regions": {"lips": 3}}, "regions.lips"),
        ({"regions": {"u": {"union": ["nope"]}}}, "regions.u"),
        ({"splits": {"train": {"subject": ["a"]}}}, "splits.train.subject"),
        ({"splits": {"train": {"subjects": "a"}}}, "splits.train.subjects"),
        ({"splits": {"train": {"subjects": ["a"], "sentences": ["9-2"]}}}, "splits.train.sentences"),
        ({"splits": {"train": {"subjects": ["a"], "sentences": ["two"]}}}, "splits.train.sentences"),
        ({"splits": {"train": {"subjects": ["a"], "sentences": ["-3"]}}}, "splits.train.sentences"),
        ({"splits": {"train": {"subjects": ["a"], "keys": ["a_1"]}}}, "splits.train"),
        ({"units": {"lenght": "m"}}, "units.lenght"),
        ({"units": {"report_scale": 0}}, "units.report_scale"),
        ({"extra": []}, "extra"),
        ({"subjects": ["a", "a"]}, "subjects"),
        ({"duration_tolerance": -0.1}, "duration_tolerance"),
        ({"version": 99}, "version"),
    ],
)
def test_bad_key_or_type_names_file_and_key(tmp_path, change, key):
    path = _write(tmp_path, dict(BASE, **change))
    with pytest.raises(MMTalkerError) as info:
        Manifest.load(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


@pytest.mark.parametrize("missing", ["name", "layout", "fps", "num_vertices"])
def test_missing_required_key(tmp_path, missing):
    data = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(MMTalkerError, match=f"'{missing}': missing"):
        Manifest.load(_write(tmp_path, data))


def test_not_json_and_not_object(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{ not json")
    with pytest.raises(MMTalkerError, match="not valid JSON"):
        Manifest.load(bad)
    with pytest.raises(MMTalkerError, match="JSON object"):
        Manifest.load(_write(tmp_path, [1, 2]))


def test_presets_hold_the_community_facts():
    assert {"vocaset", "biwi", "multiface"} <= set(preset_names())
    voca = load_preset("vocaset", "vocaset_raw")
    assert (voca.layout, voca.fps, voca.stored_fps, voca.num_vertices) == ("vocaset_raw", 30, 60, 5023)
    assert [len(voca.splits[s].subjects) for s in ("train", "val", "test")] == [8, 2, 2]
    assert voca.splits["train"].sentences == list(range(1, 41))
    assert voca.splits["test"].sentences == list(range(21, 41)) == voca.splits["val"].sentences
    assert voca.splits["test"].subjects == ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]
    assert voca.units == {"length": "m", "report_scale": 1e5, "fdd_report_scale": 1e7}
    biwi = load_preset("BIWI", "processed")
    assert (biwi.fps, biwi.stored_fps, biwi.num_vertices) == (25, 25, 23370)
    assert biwi.splits["test"] == Split(subjects=["F2", "F3", "F4", "M3", "M4", "M5"], sentences=[37, 38, 39, 40])
    assert biwi.splits["train"].sentences == list(range(1, 33)) and biwi.splits["val"].sentences == [33, 34, 35, 36]
    multi = load_preset("multiface", "processed")
    assert multi.num_vertices == 6172 and multi.splits["test"].subjects == "*"
    for m in (voca, biwi, multi):
        assert m.source and m.templates == "templates.pkl"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(MMTalkerError, match="biwi, multiface, vocaset"):
        load_preset("voxceleb", "processed")


def test_split_file_plain_or_wrapped(tmp_path):
    splits = {"test": {"subjects": ["F2"], "sentences": ["37-40"]}}
    assert load_splits(_write(tmp_path, splits, "a.json"))["test"].sentences == [37, 38, 39, 40]
    splits = {"test": {"subjects": ["F2"], "sentences": [" 12 ", "37-38", 40]}}  # a number written as a string counts too
    assert load_splits(_write(tmp_path, splits, "a2.json"))["test"].sentences == [12, 37, 38, 40]
    assert load_splits(_write(tmp_path, {"splits": splits}, "b.json"))["test"].subjects == ["F2"]
    with pytest.raises(MMTalkerError, match="'splits.test.sentence'"):
        load_splits(_write(tmp_path, {"test": {"subjects": ["F2"], "sentence": [1]}}, "c.json"))
