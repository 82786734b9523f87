"""``mmtalker inspect``: say what mmtalker reads in files and dataset folders, before any long job.

Each path becomes one record (a dict) built by a ``describe_*`` function; the command prints the records
as aligned text, or as one JSON document (a list of records) with ``--json``. A file that cannot be read
gives a record with ``"error"`` and the command exits 1 after describing the others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mmtalker.errors import MMTalkerError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64")
MESH_SUFFIXES = (".obj", ".ply")
PICKLE_SUFFIXES = (".pkl", ".pickle")
ARRAY_SUFFIXES = (".npz", ".npy")
REGION_TEXT_SUFFIXES = (".txt", ".csv")
GLB_SUFFIXES = (".glb",)

DESCRIPTION = """\
Show what mmtalker reads from each PATH (a file or a dataset folder), changing nothing:

  speech (wav flac ogg mp3 ...)  duration, sample rate, channels, format and sample type
  mesh (obj ply)                 vertices, faces, connected components, boundary loops, UVs, extent
  regions (txt csv, npz npy pkl) vertex indices per set, duplicates removed
  pickle (pkl)                   its structure (loaded with the restricted unpickler: no code runs)
  animation (npz npy, glb)       the arrays' shapes; a GLB from `mmtalker export`: frames, fps, mesh,
                                 morph targets and the vertex error of its compression
  dataset folder                 layout, subjects, sequences, fps, total duration, splits
                                 (with --splits FILE: the sequences each split of that file holds)
  checkpoint folder              model kind, speech encoder, fps, vertices, speaking styles, dataset,
                                 epoch, the split file it trained with if any, validation scores
                                 (the weights are not loaded)

Use it to check a download before training or evaluating: a mesh whose vertex count differs from the
dataset's, a region file with duplicates, or speech at an unexpected rate show up here."""

EPILOG = """\
examples:
  mmtalker inspect speech.wav FLAME_sample.ply FLAME_masks.pkl
  mmtalker inspect data/vocaset --json | python -m json.tool
  mmtalker inspect runs/demo/mmtalker/best"""


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="show what mmtalker reads in speech, mesh, region, pickle and animation files, dataset and checkpoint folders",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, dataset or checkpoint folders to describe")
    p.add_argument("--json", action="store_true", help="print one JSON document (a list with one object per path)")
    p.add_argument("--preset", help="dataset preset for FaceFormer/CodeTalker-style folders (vertices_npy/ + wav/) "
                   "that have no manifest.json: vocaset, biwi, multiface, or a preset .json file")
    p.add_argument("--splits", type=Path, metavar="FILE", help="a split JSON file replacing a dataset's splits: shows what each split "
                   "then holds (docs/datasets.md)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- records


def describe_audio(path: Path) -> dict[str, Any]:
    from mmtalker.audio.io import SAMPLE_RATE, audio_info, load_audio, wav_share_present

    info = audio_info(path)
    with warnings.catch_warnings(record=True) as caught:  # what reading it warns of goes into the record
        warnings.simplefilter("always")
        samples = len(load_audio(path))  # decoded, as every command reads it: damage the header hides shows here
    damaged = [str(w.message).removeprefix(f"{path}: ").removeprefix("damaged or cut: ") for w in caught
               if issubclass(w.category, UserWarning)]
    share = wav_share_present(path)
    truncated = {} if share is None or share >= 0.999 else {
        "truncated": f"its header promises {info.duration / max(share, 1e-9):.2f} s; the file holds {info.duration:.2f} s"}
    return {
        "kind": "audio",
        "duration_s": round(info.duration, 6),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "frames": info.frames,
        "format": info.format,
        "subtype": info.subtype,
        "read_as": f"{samples} samples ({samples / SAMPLE_RATE:.2f} s), mono, {SAMPLE_RATE} Hz",
        **truncated,
        **({"damaged": "; ".join(damaged)} if damaged and not truncated else {}),
    }


def describe_mesh(path: Path) -> dict[str, Any]:
    from mmtalker.mesh.io import load_mesh, mesh_summary

    mesh = load_mesh(path)
    record = {"kind": "mesh", **mesh_summary(mesh)}
    record["extent"] = [round(float(x), 6) for x in np.ptp(mesh.vertices, axis=0)]
    return record


def _describe_value(value: Any) -> str:
    """A one-line description of one unpickled value (never its content)."""
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {tuple(value.shape)}"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, (str, bytes)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def _structure(obj: Any, limit: int = 50) -> dict[str, Any]:
    record: dict[str, Any] = {"type": _describe_value(obj)}
    if isinstance(obj, dict):
        items = list(obj.items())
        record["entries"] = {str(k): _describe_value(v) for k, v in items[:limit]}
        if len(items) > limit:
            record["more_entries"] = len(items) - limit
    return record


def _regions(path: Path) -> dict[str, Any] | None:
    """Region sets in ``path`` as ``{name: {indices, duplicates}}``, or None when it is not a region file."""
    from mmtalker.data.regions import load_region_sets

    try:
        sets = load_region_sets(path)
    except MMTalkerError:
        return None
    return {name: {"indices": len(r), "duplicates": r.duplicates} for name, r in sets.items()}


def describe_pickle(path: Path) -> dict[str, Any]:
    from mmtalker.data.safe_pickle import load_pickle

    record: dict[str, Any] = {"kind": "pickle", **_structure(load_pickle(path))}
    regions = _regions(path)
    if regions is not None:
        record["regions"] = regions
    return record


def describe_array_file(path: Path) -> dict[str, Any]:
    """``.npz``/``.npy``: the arrays' shapes, and region sets when they read as such."""
    record: dict[str, Any] = {"kind": "arrays"}
    try:
        if path.suffix.lower() == ".npy":
            record["entries"] = {path.stem: _describe_value(np.load(path, allow_pickle=False, mmap_mode="r"))}
        else:
            with np.load(path, allow_pickle=False) as data:
                record["entries"] = {k: _describe_value(data[k]) for k in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many types on corrupt files
        from mmtalker.data.formats.common import numpy_failure

        raise MMTalkerError(path, f"not a readable numpy file ({numpy_failure(path, exc)})") from None
    regions = _regions(path)
    if regions is not None:
        record["regions"] = regions
    return record


def describe_glb(path: Path) -> dict[str, Any]:
    """A GLB as ``mmtalker export --format glb`` writes it: the animation's frames, rate, mesh and morph targets."""
    from mmtalker.render.export import glb_animation, read_glb

    try:
        gltf, binary = read_glb(path)
        vertices, times, faces = glb_animation(gltf, binary)
    except MMTalkerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged GLB fails in many ways
        raise MMTalkerError(path, f"not a GLB animation as `mmtalker export` writes it ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
    extras = gltf.get("extras") or {}
    record: dict[str, Any] = {"kind": "animation (glTF binary)", "frames": int(len(vertices)),
                              "vertices": int(vertices.shape[1]), "faces": int(len(faces)),
                              "morph_targets": len(gltf["meshes"][0]["primitives"][0].get("targets", [])),
                              "duration_s": _glb_duration(len(vertices), times, extras.get("fps"))}
    if "fps" in extras:
        record["fps"] = extras["fps"]
    if "max_vertex_error" in extras:
        record["max_vertex_error"] = extras["max_vertex_error"]
    return record


def _glb_duration(frames: int, times: np.ndarray, fps) -> float:
    """Seconds a GLB animation lasts as ``animate`` counts them (frames ÷ fps: the last frame is shown for 1/fps s),
    from its extras' fps; the last key time where the file has no usable fps."""
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0:
        return round(frames / float(fps), 3)
    return round(float(times[-1]), 3) if len(times) else 0.0


def describe_region_text(path: Path) -> dict[str, Any]:
    from mmtalker.data.regions import load_region_sets

    sets = load_region_sets(path)
    return {"kind": "regions", "regions": {n: {"indices": len(r), "duplicates": r.duplicates} for n, r in sets.items()}}


def describe_dataset(path: Path, preset: str | None = None, splits: Path | None = None) -> dict[str, Any]:
    try:
        from mmtalker.data.dataset import open_dataset
    except ModuleNotFoundError as exc:
        if exc.name != "mmtalker.data.dataset":
            raise
        raise MMTalkerError(path, "reading dataset folders is not part of this build of mmtalker") from None
    ds = open_dataset(path, preset, splits=splits)
    m = ds.manifest
    sequences = ds.sequences()
    return {
        "kind": "dataset",
        "name": m.name,
        "layout": m.layout,
        "fps": m.fps,
        "num_vertices": m.num_vertices,
        "subjects": len(ds.subjects),
        "subject_names": list(ds.subjects),
        "sequences": len(sequences),
        "duration_s": round(float(sum(s.duration for s in sequences)), 3),
        "splits": {name: _split_size(ds, name) for name in m.splits},
    }


def _split_size(dataset, name: str):
    """How many sequences a split selects, or what is wrong with it (a split naming subjects this copy lacks is a
    finding to show, not a reason to describe nothing)."""
    try:
        return len(dataset.sequences(split=name))
    except MMTalkerError as exc:
        return f"0 ({exc.problem})"


def _check_shown_settings(config_path: Path, model: dict, dataset: dict) -> None:
    """The settings of a checkpoint's config.json that inspect shows beyond its mappings, each of the type
    it is written with, else MMTalkerError naming ``config_path`` and the entry."""
    from mmtalker.models.peer_base import check_fps

    subjects = model.get("subjects") or []
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise MMTalkerError(config_path, f"entry 'model.subjects' must be a list of names, got {subjects!r}"[:200],
                            "the file is damaged; use another checkpoint or retrain")
    if "fps" in model:
        check_fps(model["fps"], f"{config_path}: model")
    scale = (dataset.get("units") or {}).get("report_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise MMTalkerError(config_path, f"entry 'extras.dataset.units.report_scale' must be a number, got {scale!r}"[:200],
                            "the file is damaged; use another checkpoint or retrain")


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint folder's config.json (any model kind); the weights are only sized, not loaded."""
    from mmtalker.eval.report import metric_scale, squared_unit
    from mmtalker.train.checkpoint import WEIGHTS, read_checkpoint_meta, trained_split_file

    meta = read_checkpoint_meta(path)  # its model, extras, dataset, units and metrics entries are mappings
    model = meta.get("model") or {}
    extras = meta.get("extras") or {}
    dataset = extras.get("dataset") or {}
    _check_shown_settings(path / "config.json", model, dataset)
    weights = path / WEIGHTS
    record: dict[str, Any] = {
        "kind": "checkpoint",
        "model": meta.get("model_class", "?"),
        "audio_encoder": model.get("audio_encoder", "?"),
        "fps": model.get("fps", dataset.get("fps", "?")),
        "num_vertices": dataset.get("num_vertices", "?"),
        "styles": len(model.get("subjects") or []),
        "style_names": list(model.get("subjects") or []),
        "dataset": dataset.get("name", "?"),
        "epoch": extras.get("epoch", "?"),
        "step": extras.get("step", "?"),
        "weights_mb": round(weights.stat().st_size / 2**20, 2) if weights.is_file() else f"missing ({WEIGHTS})",
    }
    trained_splits = trained_split_file(meta)
    if trained_splits:  # scored by other splits, its training sequences may be among the scored (mmtalker evaluate notes it)
        record["split_file"] = trained_splits
    metrics = extras.get("metrics") or {}
    units = dataset.get("units") or {}
    length = units.get("length", "m")
    scores = {k: round(float(metrics[k]) * (1.0 if k == "mve" else metric_scale(units, k)), 6)  # squared ones in report units
              for k in ("lve", "eve", "fdd", "mve") if isinstance(metrics.get(k), (int, float))}
    if scores:
        record["validation"] = scores
        if metric_scale(units) != 1.0 or metric_scale(units, "fdd") != 1.0:
            record["validation_units"] = (f"lve, eve in {squared_unit(units)}; fdd in {squared_unit(units, 'fdd')}; "
                                          f"mve in {length}")
    return record


def describe(path: Path, *, preset: str | None = None, splits: Path | None = None) -> dict[str, Any]:
    """The record for one path: ``{"path", "kind", ...}``; raises MMTalkerError when it cannot be read."""
    if not path.exists():
        raise MMTalkerError(path, "no such file or folder", "check the path")
    if path.is_dir():
        if (path / "config.json").is_file() and not (path / "manifest.json").is_file():
            return {"path": str(path), **describe_checkpoint(path)}
        return {"path": str(path), **describe_dataset(path, preset, splits)}
    suffix = path.suffix.lower()
    for suffixes, fn in (
        (AUDIO_SUFFIXES, describe_audio),
        (MESH_SUFFIXES, describe_mesh),
        (PICKLE_SUFFIXES, describe_pickle),
        (ARRAY_SUFFIXES, describe_array_file),
        (REGION_TEXT_SUFFIXES, describe_region_text),
        (GLB_SUFFIXES, describe_glb),
    ):
        if suffix in suffixes:
            return {"path": str(path), **fn(path)}
    raise MMTalkerError(
        path, f"mmtalker does not know what a {path.suffix or 'suffix-less'} file is",
        "it inspects speech (wav flac ogg mp3), meshes (obj ply), regions (txt npz npy pkl), animations (npz npy glb), "
        "dataset and checkpoint folders",
    )


# ------------------------------------------------------------------------------------------------- text


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return " x ".join(_format_value(v) for v in value) if value and not isinstance(value[0], str) else ", ".join(value)
    return str(value)


def format_record(record: dict[str, Any]) -> str:
    """Aligned ``key  value`` lines under a ``path (kind)`` heading; nested dicts indented."""
    lines = [f"{record['path']}  ({record.get('kind', 'error')})"]
    for key, value in record.items():
        if key in ("path", "kind"):
            continue
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            for name, sub in value.items():
                if isinstance(sub, dict):  # a region: {"indices": K, "duplicates": d}
                    dup = f" ({sub['duplicates']} duplicates removed)" if sub.get("duplicates") else ""
                    lines.append(f"    {name:<20} {sub['indices']} indices{dup}")
                else:
                    lines.append(f"    {name:<20} {_format_value(sub)}")
        else:
            lines.append(f"  {key:<22} {_format_value(value)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    records, failed = [], 0
    for path in args.paths:
        try:
            record = describe(path, preset=args.preset, splits=args.splits)
        except MMTalkerError as exc:
            if len(args.paths) == 1:
                raise
            failed += 1
            record = {"path": str(path), "kind": "error", "error": exc.message}
            print(f"mmtalker inspect: error: {exc.message}", file=sys.stderr)
        records.append(record)
        if not args.json and record["kind"] != "error":
            print(format_record(record), flush=True)
    if args.json:
        print(json.dumps(records, indent=2))
    return 1 if failed else 0
