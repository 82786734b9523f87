"""Fuzzing the text readers users hand us: manifest.json, split files and training-config YAML.

Random bytes, random JSON/YAML values and single-key mutations of a valid file either read as a
valid, well-typed result or raise MMTalkerError naming the file; never another exception, never a
hang. A dataset folder whose manifest is mutated opens or fails the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fake_talk import write_fake_dataset
from mmtalker.data.manifest import Manifest, Split, load_splits
from mmtalker.errors import MMTalkerError
from mmtalker.train.config import TrainingConfig, load_config
from conftest import time_limit

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
HANG_SECONDS = 20
FUZZ = settings(
    max_examples=80,
    deadline=5000,  # ms; the CPU is shared
    derandomize=True,  # the same examples on every run, so CI failures reproduce
    database=None,  # write nothing into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def _read(reader, path: Path):
    """reader(path), or None when it raised MMTalkerError naming the file."""
    with time_limit(HANG_SECONDS):
        try:
            return reader(path)
        except MMTalkerError as exc:
            assert path.name in str(exc), f"error does not name {path.name}: {exc}"
            return None


# ------------------------------------------------------------------------------------------ strategies
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
SPLIT_ENTRIES = st.fixed_dictionaries({}, optional={
    "subjects": st.one_of(st.just("*"), st.lists(st.text(max_size=6), max_size=3), SCALARS),
    "sentences": st.one_of(st.lists(st.one_of(st.integers(-5, 50), st.sampled_from(["1-40", "21-40", "40-21", "a-b", "3-"])),
                                    max_size=4), SCALARS),
    "keys": st.one_of(st.lists(st.text(max_size=8), max_size=3), SCALARS),
    "junk": SCALARS,
})


@pytest.fixture(scope="module")
def good_manifest(tmp_path_factory) -> dict:
    root = write_fake_dataset(tmp_path_factory.mktemp("fuzzmanifest") / "data", clips_per_subject=2)
    return json.loads((root / "manifest.json").read_text())


def _check_manifest(m: Manifest) -> None:
    assert isinstance(m, Manifest)
    assert isinstance(m.name, str) and isinstance(m.layout, str)
    assert math.isfinite(m.fps) and m.fps > 0 and math.isfinite(m.stored_fps) and m.stored_fps > 0
    assert isinstance(m.num_vertices, int) and m.num_vertices > 0
    assert all(isinstance(s, Split) for s in m.splits.values())
    assert all(isinstance(t, str) for t in m.topology)


def _check_splits(splits) -> None:
    assert isinstance(splits, dict)
    for split in splits.values():
        assert isinstance(split, Split)
        assert split.subjects == "*" or all(isinstance(s, str) for s in split.subjects)
        assert split.sentences is None or all(isinstance(n, int) and n >= 0 for n in split.sentences)


# --------------------------------------------------------------------------------------------- manifests
@FUZZ
@given(st.binary(max_size=400))
def test_manifest_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_bytes(blob)
    out = _read(Manifest.load, path)
    if out is not None:
        _check_manifest(out)


@FUZZ
@given(value=JSON_VALUES)
def test_manifest_random_json(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_text(json.dumps(value))
    out = _read(Manifest.load, path)
    if out is not None:
        _check_manifest(out)


MANIFEST_KEYS = ["name", "layout", "fps", "stored_fps", "num_vertices", "topology", "templates", "regions", "splits",
                 "subjects", "units", "extra", "duration_tolerance", "source", "version", "frames_per_second"]


@FUZZ
@given(key=st.sampled_from(MANIFEST_KEYS), value=st.one_of(JSON_VALUES, st.just("__delete__")))
def test_manifest_one_key_mutated(tmp_path_factory, good_manifest, key, value):
    data = dict(good_manifest)
    if value == "__delete__":
        data.pop(key, None)
    else:
        data[key] = value
    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_text(json.dumps(data))
    out = _read(Manifest.load, path)
    if out is not None:
        _check_manifest(out)


@FUZZ
@given(splits=st.dictionaries(st.sampled_from(["train", "val", "test", "", "x" * 40]), SPLIT_ENTRIES, max_size=3))
def test_manifest_mutated_splits(tmp_path_factory, good_manifest, splits):
    path = tmp_path_factory.mktemp("m") / "manifest.json"
    path.write_text(json.dumps({**good_manifest, "splits": splits}))
    out = _read(Manifest.load, path)
    if out is not None:
        _check_manifest(out)
        _check_splits(out.splits)


def test_dataset_with_mutated_manifest_opens_or_fails_clearly(tmp_path, good_manifest):
    """A handful of damaged manifests inside a real folder: open_dataset gives a Dataset or a clear error."""
    from mmtalker.data.dataset import open_dataset

    root = write_fake_dataset(tmp_path / "data", clips_per_subject=2)
    mutations = [("num_vertices", 80), ("num_vertices", 10**9), ("fps", 0), ("fps", 1e-9), ("stored_fps", 1e9),
                 ("topology", ["missing.obj"]), ("templates", "nothing.npz"), ("templates", {"s01": "face.obj"}),
                 ("regions", {"lips": "regions/none.txt"}), ("regions", {"lips": {"union": ["lips"]}}),
                 ("subjects", ["s01", "s01"]), ("splits", {"test": {"subjects": ["zz"], "sentences": [1]}}),
                 ("duration_tolerance", -1), ("layout", "processed"), ("version", 99)]
    for key, value in mutations:
        (root / "manifest.json").write_text(json.dumps({**good_manifest, key: value}))
        with time_limit(HANG_SECONDS):
            try:
                ds = open_dataset(root)
                for seq in ds.sequences():
                    ds.template(seq.subject), seq.vertices().shape
                ds.topology(), [ds.region(n) for n in ds.manifest.regions]
            except MMTalkerError as exc:
                assert str(root) in str(exc) or key in str(exc), f"{key}={value!r}: {exc}"


# ------------------------------------------------------------------------------------------- split files
@FUZZ
@given(st.binary(max_size=300))
def test_split_file_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("s") / "splits.json"
    path.write_bytes(blob)
    out = _read(load_splits, path)
    if out is not None:
        _check_splits(out)


@FUZZ
@given(value=st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=8), SPLIT_ENTRIES, max_size=3),
                       st.builds(lambda d: {"splits": d}, st.dictionaries(st.text(max_size=8), SPLIT_ENTRIES, max_size=3))))
def test_split_file_random_structures(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("s") / "splits.json"
    path.write_text(json.dumps(value))
    out = _read(load_splits, path)
    if out is not None:
        _check_splits(out)


# ------------------------------------------------------------------------------------------ config YAML
@pytest.fixture(scope="module")
def base_config() -> dict:
    return yaml.safe_load((CONFIGS / "mmtalker_synth.yaml").read_text())


def _check_config(config: TrainingConfig) -> None:
    assert isinstance(config, TrainingConfig)
    assert isinstance(config.optim.epochs, int) and not isinstance(config.optim.epochs, bool)
    assert isinstance(config.optim.lr, float) and isinstance(config.model.d_model, int)
    assert isinstance(config.model.regressor_layers, list)


def _non_string_keys(text: str) -> bool:
    """Whether the YAML parses to mappings with keys that are not strings (the known gap tested below)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False

    def walk(x):
        if isinstance(x, dict):
            return any(not isinstance(k, str) or walk(v) for k, v in x.items())
        return isinstance(x, list) and any(walk(v) for v in x)

    return walk(data)


@pytest.mark.parametrize("text", ["?\n", "1: 2\n", "optim:\n  3: 4\n"])
def test_config_non_string_keys(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    _read(load_config, path)


@FUZZ
@given(st.text(max_size=300))
def test_config_random_text(tmp_path_factory, text):
    assume(not _non_string_keys(text))
    path = tmp_path_factory.mktemp("c") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    out = _read(load_config, path)
    if out is not None:
        _check_config(out)


def test_config_not_utf8(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x80\xff optim: {}\n")
    _read(load_config, path)


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


@FUZZ
@given(data=st.data(), value=YAML_VALUES)
def test_config_one_setting_mutated(tmp_path_factory, base_config, data, value):
    section = data.draw(st.sampled_from(sorted(base_config) + ["modle"]))
    keys = sorted(base_config.get(section, {})) + ["unknown_key"]
    key = data.draw(st.sampled_from(keys))
    mutated = json.loads(json.dumps(base_config))
    mutated.setdefault(section, {})[key] = value
    path = tmp_path_factory.mktemp("c") / "config.yaml"
    path.write_text(yaml.safe_dump(mutated))
    out = _read(load_config, path)
    if out is not None:
        _check_config(out)
        assert section in base_config and key in base_config[section], f"{section}.{key} accepted but unknown"


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("abdmo:[]{}- \n\t'\"&*!|>#%@`,?0123456789.")), max_size=120))
def test_config_random_yaml_syntax(tmp_path_factory, text):
    """Text built from YAML's special characters (anchors, tags, flow and block syntax)."""
    assume(not _non_string_keys(text))
    path = tmp_path_factory.mktemp("c") / "config.yaml"
    path.write_text(text)
    out = _read(load_config, path)
    if out is not None:
        _check_config(out)
