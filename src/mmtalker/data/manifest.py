"""The manifest: everything code must know about a dataset and must not hard-code.

A dataset folder in our own format holds a ``manifest.json``; the community layouts (VOCASET as released,
the FaceFormer/CodeTalker processed folders of VOCASET, BIWI, Multiface) get theirs from a preset in
``mmtalker/presets/*.json``, which has the same schema without ``layout``. Example::

    {
      "name": "vocaset", "layout": "processed", "fps": 30, "stored_fps": 60, "num_vertices": 5023,
      "topology": ["templates/FLAME_sample.ply", "FLAME_sample.ply"],
      "templates": "templates.pkl",
      "regions": {"lips": {"file": "FLAME_masks.pkl", "key": "lips"},
                  "upper_face": {"union": ["forehead", "eye_region"]}},
      "splits": {"test": {"subjects": ["FaceTalk_170809_00138_TA"], "sentences": ["21-40"]}},
      "subjects": [], "units": {"length": "m", "report_scale": 1e5}, "extra": {}
    }

Paths are relative to the dataset folder (absolute paths are allowed). Unknown keys and wrong types are
errors naming the file and the key, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmtalker.errors import MMTalkerError

LAYOUTS = ("native", "processed", "vocaset_raw")
"""``native``: our folder format (:mod:`mmtalker.data.writer`); ``processed``: ``vertices_npy/`` + ``wav/`` +
``templates.pkl`` as FaceFormer/CodeTalker use; ``vocaset_raw``: the VOCASET release as downloaded."""

MANIFEST_VERSION = 1

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")  # "21-40", or "7" alone


@dataclass
class Split:
    """A named subset of a dataset's sequences.

    Either ``keys`` (explicit sequence keys such as ``"F2_e37"``), or ``subjects`` (names, or ``"*"`` for every
    subject of the dataset) together with ``sentences`` (sentence numbers, the trailing digits of a sentence
    id: ``sentence21`` -> 21, ``e37`` -> 37; ``None`` for all sentences).
    """

    subjects: list[str] | str = "*"
    sentences: list[int] | None = None
    keys: list[str] | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        if self.keys is not None:
            out["keys"] = list(self.keys)
        else:
            out["subjects"] = self.subjects if isinstance(self.subjects, str) else list(self.subjects)
            if self.sentences is not None:
                out["sentences"] = _compress_ranges(self.sentences)
        return out


@dataclass
class Manifest:
    """What a dataset is: see the module docstring for the JSON form.

    Attributes:
        name: short dataset name (``"vocaset"``).
        layout: one of :data:`LAYOUTS`.
        fps: frames per second the dataset serves (motion is converted from ``stored_fps``).
        stored_fps: frames per second of the motion on disk.
        num_vertices: ``V``, vertices per frame.
        topology: mesh file(s) with the faces, relative to the folder; the first that exists is used.
        templates: a ``.pkl``/``.npz`` file mapping subject -> ``(V, 3)`` neutral face, or a dict
            subject -> mesh file.
        regions: region name -> spec: a file path, ``{"file": path, "key": name}`` for multi-set files
            (FLAME_masks.pkl, npz), or ``{"union": [other region names]}``.
        splits: split name -> :class:`Split`.
        subjects: known subject names (empty: the subjects found on disk).
        units: ``{"length": "m" | "mm", "report_scale": factor metrics are multiplied by when reported}``.
        extra: free-form facts (e.g. the synthetic benchmark's oracle floor).
        duration_tolerance: seconds by which a sequence's audio and motion durations may disagree.
        source: where the facts in this manifest come from (free text, for presets).
        version: manifest schema version.
    """

    name: str
    layout: str
    fps: float
    num_vertices: int
    stored_fps: float | None = None
    topology: list[str] = field(default_factory=list)
    templates: str | dict[str, str] | None = None
    regions: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Split] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)
    units: dict[str, Any] = field(default_factory=lambda: {"length": "m", "report_scale": 1.0})
    extra: dict[str, Any] = field(default_factory=dict)
    duration_tolerance: float = 0.5
    source: str | None = None
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.stored_fps is None:
            self.stored_fps = self.fps

    @classmethod
    def load(cls, path: str | os.PathLike, *, layout: str | None = None) -> "Manifest":
        """Read a manifest (or, with ``layout`` given, a preset that has no ``layout`` key) from JSON."""
        path = Path(path)
        data = read_json(path)
        if layout is not None:
            data.setdefault("layout", layout)
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, what: str | os.PathLike) -> "Manifest":
        """Build a manifest from parsed JSON, checking every key; ``what`` names the file in errors."""
        return _parse_manifest(data, str(what))

    def to_json(self) -> dict:
        """The JSON form (plain dicts and lists)."""
        out = asdict(self)
        out["splits"] = {name: split.to_json() for name, split in self.splits.items()}
        return out

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``manifest.json`` (UTF-8, indented); refuses an existing file unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise MMTalkerError(path, "already exists", "pass overwrite=True to replace it")
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def read_json(path: Path) -> Any:
    """Parse a JSON file, with errors that name it."""
    if path.is_dir():
        raise MMTalkerError(path, "is a folder, not a JSON file")
    if not path.is_file():
        raise MMTalkerError(path, "no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MMTalkerError(path, f"is not valid JSON ({exc})") from None


def load_splits(path: str | os.PathLike) -> dict[str, Split]:
    """Read a split file: ``{"train": {"subjects": [...], "sentences": ["1-40"]}, ...}`` (optionally
    wrapped as ``{"splits": {...}}``), to replace a dataset's or preset's splits."""
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict) and set(data) == {"splits"}:
        data = data["splits"]
    return parse_splits(data, str(path))


def parse_splits(data: Any, what: str | os.PathLike) -> dict[str, Split]:
    """Splits from their JSON form (``{"test": {"subjects": [...], "sentences": ["21-40"]}}``); ``what`` names
    the file in errors."""
    return _parse_splits(data, str(what), "splits")


# ---------------------------------------------------------------------------------------------- parsing


def _fail(what: str, key: str, problem: str) -> MMTalkerError:
    return MMTalkerError(what, f"key '{key}': {problem}")  # ``what`` names the file: a manifest, preset or split file


def _parse_manifest(data: Any, what: str) -> Manifest:
    if not isinstance(data, dict):
        raise MMTalkerError(what, f"a manifest must be a JSON object, got {type(data).__name__}")
    known = {
        "name", "layout", "fps", "stored_fps", "num_vertices", "topology", "templates", "regions", "splits",
        "subjects", "units", "extra", "duration_tolerance", "source", "version",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(what, unknown[0], f"unknown key (known keys: {', '.join(sorted(known))})")
    for key in ("name", "layout", "fps", "num_vertices"):
        if key not in data:
            raise _fail(what, key, "missing (required)")
    layout = _string(data["layout"], what, "layout")
    if layout not in LAYOUTS:
        raise _fail(what, "layout", f"'{layout}' is not one of {', '.join(LAYOUTS)}")
    version = _integer(data.get("version", MANIFEST_VERSION), what, "version")
    if version > MANIFEST_VERSION:
        raise _fail(what, "version", f"{version} is newer than this mmtalker reads ({MANIFEST_VERSION}); upgrade mmtalker")
    return Manifest(
        name=_string(data["name"], what, "name"),
        layout=layout,
        fps=_positive(data["fps"], what, "fps"),
        stored_fps=_positive(data.get("stored_fps", data["fps"]), what, "stored_fps"),
        num_vertices=_positive_int(data["num_vertices"], what, "num_vertices"),
        topology=_topology(data.get("topology"), what),
        templates=_templates(data.get("templates"), what),
        regions=_regions(data.get("regions", {}), what),
        splits=_parse_splits(data.get("splits", {}), what, "splits"),
        subjects=_string_list(data.get("subjects", []), what, "subjects"),
        units=_units(data.get("units", {"length": "m", "report_scale": 1.0}), what),
        extra=_dict(data.get("extra", {}), what, "extra"),
        duration_tolerance=_non_negative(data.get("duration_tolerance", 0.5), what, "duration_tolerance"),
        source=None if data.get("source") is None else _string(data["source"], what, "source"),
        version=version,
    )


def _string(value: Any, what: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(what, key, f"expected a non-empty string, got {value!r}")
    return value


def _number(value: Any, what: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(what, key, f"expected a number, got {value!r}")
    return float(value)


def _positive(value: Any, what: str, key: str) -> float:
    number = _number(value, what, key)
    if number <= 0:
        raise _fail(what, key, f"must be > 0, got {value!r}")
    return number


def _non_negative(value: Any, what: str, key: str) -> float:
    number = _number(value, what, key)
    if number < 0:
        raise _fail(what, key, f"must be >= 0, got {value!r}")
    return number


def _integer(value: Any, what: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(what, key, f"expected an integer, got {value!r}")
    return value


def _positive_int(value: Any, what: str, key: str) -> int:
    number = _integer(value, what, key)
    if number <= 0:
        raise _fail(what, key, f"must be > 0, got {value!r}")
    return number


def _dict(value: Any, what: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(what, key, f"expected an object, got {type(value).__name__}")
    return dict(value)


def _string_list(value: Any, what: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(what, key, f"expected a list of non-empty strings, got {value!r}")
    if len(set(value)) != len(value):
        raise _fail(what, key, "has duplicate entries")
    return list(value)


def _topology(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [_string(value, what, "topology")]
    return _string_list(value, what, "topology")


def _templates(value: Any, what: str) -> str | dict[str, str] | None:
    if value is None or isinstance(value, str):
        return None if value is None else _string(value, what, "templates")
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        return dict(value)
    raise _fail(what, "templates", f"expected a file name or an object subject -> mesh file, got {value!r}")


def _regions(value: Any, what: str) -> dict[str, Any]:
    regions = _dict(value, what, "regions")
    for name, spec in regions.items():
        key = f"regions.{name}"
        if isinstance(spec, str):
            _string(spec, what, key)
        elif isinstance(spec, dict) and set(spec) == {"union"}:
            parts = _string_list(spec["union"], what, key + ".union")
            missing = [p for p in parts if p not in regions or p == name]
            if missing:
                raise _fail(what, key, f"union of unknown region(s) {', '.join(missing)}")
        elif isinstance(spec, dict) and "file" in spec and set(spec) <= {"file", "key"}:
            _string(spec["file"], what, key + ".file")
            if "key" in spec:
                _string(spec["key"], what, key + ".key")
        else:
            raise _fail(what, key, 'expected a file path, {"file": ..., "key": ...} or {"union": [...]}')
    return regions


def _units(value: Any, what: str) -> dict[str, Any]:
    units = _dict(value, what, "units")
    unknown = sorted(set(units) - {"length", "report_scale", "fdd_report_scale"})
    if unknown:
        raise _fail(what, f"units.{unknown[0]}", "unknown key (known: length, report_scale, fdd_report_scale)")
    out = {"length": _string(units.get("length", "m"), what, "units.length")}
    out["report_scale"] = _positive(units.get("report_scale", 1.0), what, "units.report_scale")
    if "fdd_report_scale" in units:  # the papers print FDD at its own power of ten (VOCASET ×1e-7, BIWI ×1e-5)
        out["fdd_report_scale"] = _positive(units["fdd_report_scale"], what, "units.fdd_report_scale")
    return out


def _parse_splits(value: Any, what: str, key: str) -> dict[str, Split]:
    splits = _dict(value, what, key)
    return {name: _parse_split(spec, what, f"{key}.{name}") for name, spec in splits.items()}


def _parse_split(spec: Any, what: str, key: str) -> Split:
    if isinstance(spec, Split):
        spec = spec.to_json()
    spec = _dict(spec, what, key)
    unknown = sorted(set(spec) - {"subjects", "sentences", "keys"})
    if unknown:
        raise _fail(what, f"{key}.{unknown[0]}", "unknown key (known: subjects, sentences, keys)")
    if "keys" in spec:
        if set(spec) != {"keys"}:
            raise _fail(what, key, "give either 'keys' or 'subjects'/'sentences', not both")
        return Split(keys=_string_list(spec["keys"], what, key + ".keys"))
    if "subjects" not in spec:
        raise _fail(what, key, "needs 'subjects' (a list of names or \"*\") or 'keys'")
    subjects = spec["subjects"]
    if subjects != "*":
        subjects = _string_list(subjects, what, key + ".subjects")
    sentences = spec.get("sentences")
    if sentences is not None:
        sentences = _sentence_numbers(sentences, what, key + ".sentences")
    return Split(subjects=subjects, sentences=sentences)


def _sentence_numbers(value: Any, what: str, key: str) -> list[int]:
    """``[1, 2, "21-40"]`` -> sorted unique ints; ranges are inclusive."""
    if not isinstance(value, list):
        raise _fail(what, key, f'expected a list of numbers or "a-b" ranges, got {value!r}')
    numbers: set[int] = set()
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            numbers.add(item)
            continue
        match = _RANGE.match(item) if isinstance(item, str) else None
        first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (1, 0)
        if first > last:
            raise _fail(what, key, f'{item!r} is not a sentence number or an "a-b" range with a <= b')
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def _compress_ranges(numbers: list[int]) -> list[int | str]:
    """[1, 2, 3, 7] -> ["1-3", 7]: the inverse of :func:`_sentence_numbers`."""
    out: list[int | str] = []
    values = sorted(set(numbers))
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            lo, hi = values[start], values[i - 1]
            out.append(lo if lo == hi else f"{lo}-{hi}")
            start = i
    return out
