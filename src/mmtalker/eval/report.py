"""A comparison report from ``mmtalker evaluate --json`` files: a Markdown table, bar charts and heatmaps.

Each JSON file holds one split's scores of several models (the oracle's too when it was asked for) and, for
the synthetic benchmark, the oracle floor it recorded for the split. The report writes ``report.md`` (one
table per split, units stated, the floor as a last row with each model's LVE as a multiple of it),
per-subject LVE and EVE tables, ``metrics_<split>.png`` (bar charts of LVE, EVE and |FDD|, the floor dashed) and
``heatmap_<split>.png`` (each model's root mean squared error per vertex rendered on the face, one colour scale
for all models, shown in a colour bar with the dataset's unit).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError

BAR_METRICS = (("lve", "LVE"), ("eve", "EVE"), ("fdd_abs", "|FDD|"))


METRIC_KEYS = ("frames", "sequences", "lve", "eve", "mve", "fdd", "fdd_abs")  # numbers wherever scores are kept


def load_scores(path: Path) -> dict:
    """One ``evaluate --json`` file, checked for the fields the report reads: an error names the first bad entry."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MMTalkerError(path, f"cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or "split" not in data:
        raise MMTalkerError(path, "is not a score file from 'mmtalker evaluate --json'")
    problem = bad_entry(data)
    if problem is not None:
        raise MMTalkerError(path, problem, "the report reads score files as 'mmtalker evaluate --json' writes them")
    return data


def bad_entry(data: dict) -> str | None:
    """The first entry of a score file that the report cannot use, as ``"'<entry>': <problem>"``; None when all is well."""
    split = data["split"]
    if not isinstance(split, str) or not split or "/" in split or "\\" in split:
        return f"'split': expected a split name, got {_shown(split)}"
    if not data["models"]:
        return "'models': holds no model"
    units = data.get("units", {})
    if not isinstance(units, dict):
        return f"'units': expected an object {{\"length\": ..., \"report_scale\": ...}}, got {_shown(units)}"
    if not isinstance(units.get("length", "m"), str):
        return f"'units.length': expected a unit name, got {_shown(units['length'])}"
    for key in ("report_scale", "fdd_report_scale"):
        scale = units.get(key, 1.0)
        if not _is_number(scale) or not math.isfinite(scale) or scale <= 0:
            return f"'units.{key}': expected a positive number, got {_shown(scale)}"
    floor = data.get("oracle_floor")
    if floor is not None and (problem := _bad_scores(floor, "oracle_floor")):
        return problem
    for name, entry in data["models"].items():
        where = f"models.{name}"
        if not isinstance(entry, dict):
            return f"'{where}': expected an object with the model's scores, got {_shown(entry)}"
        if "overall" not in entry:
            return f"'{where}': has no 'overall' scores"
        if problem := _bad_scores(entry["overall"], f"{where}.overall"):
            return problem
        per_subject = entry.get("per_subject") or {}
        if not isinstance(per_subject, dict):
            return f"'{where}.per_subject': expected an object subject -> scores, got {_shown(per_subject)}"
        for subject, scores in per_subject.items():
            if problem := _bad_scores(scores, f"{where}.per_subject.{subject}", required=()):
                return problem
        per_vertex = entry.get("per_vertex_sq_error")
        if per_vertex is not None and (not isinstance(per_vertex, list) or not all(map(_is_number, per_vertex))):
            return f"'{where}.per_vertex_sq_error': expected a list of numbers, got {_shown(per_vertex)}"
    return None


def _bad_scores(scores, where: str, required: tuple = ("mve",)) -> str | None:
    """The first problem of one set of scores (metric -> number; ``required`` metrics present), or None."""
    if not isinstance(scores, dict):
        return f"'{where}': expected an object metric -> number, got {_shown(scores)}"
    for key in required:
        if key not in scores:
            return f"'{where}': has no '{key}'"
    for key in METRIC_KEYS:
        if key in scores and not _is_number(scores[key]):
            return f"'{where}.{key}': expected a number, got {_shown(scores[key])}"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value) -> str:
    """A value as an error shows it: short values as JSON has them, containers by kind."""
    if isinstance(value, (list, dict)):
        return f"a list of {len(value)}" if isinstance(value, list) else "an object"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


FLOOR_NAME = "oracle floor (recorded with the benchmark)"


def number(value: float) -> str:
    """A score at the report scale: 4 decimals, or 4 significant digits when that would show 0.0000 (a dataset
    whose manifest gives no ``report_scale``)."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.4g}"


def metric_scale(units: dict, metric: str = "lve") -> float:
    """The factor a metric is printed at: ``units.report_scale``, or for FDD and |FDD| ``units.fdd_report_scale``
    when the dataset gives one (VOCASET's papers print FDD ×1e-7 beside LVE ×1e-5)."""
    if metric in ("fdd", "fdd_abs") and "fdd_report_scale" in units:
        return float(units["fdd_report_scale"])
    return float(units.get("report_scale", 1.0))


def squared_unit(units: dict, metric: str = "lve") -> str:
    """How squared scores of ``metric`` at its report scale are labelled, e.g. ``m² ×1e-05``."""
    scale = metric_scale(units, metric)
    return f"{units.get('length', 'unit')}²" + (f" ×{1 / scale:.0e}" if scale != 1 else "")


def recorded_floor(data: dict) -> dict | None:
    """The benchmark's own oracle scores for the split (written by ``evaluate --json`` from the manifest), or
    None when there are none or the oracle was scored as one of the models."""
    floor = data.get("oracle_floor")
    if not isinstance(floor, dict) or any("oracle" in name for name in data["models"]):
        return None
    return floor


def score_table(rows: list[tuple[str, dict]], units: dict, floor: dict | None = None, *, sequences: bool = False,
                label: str = "model", ratio_to: dict | None = None, complete: set | None = None) -> str:
    """A Markdown table of overall scores (``rows``: (name, overall scores)) at the report scale of ``units``,
    the units in the header; ``floor`` (recorded oracle scores) as a last row, with each row's LVE as a
    multiple of it when the row was scored on as many sequences as the floor (``ratio_to``: the same ratio to
    scores among ``rows``, the oracle scored afresh, with no row added; ``complete``: the rows known to cover every
    sequence of the split, the only ones then to get the ratio, whatever their count of predictions); ``sequences``: a column of each row's sequence count; ``label``: the first column's name."""
    sq, fdd_sq = squared_unit(units), squared_unit(units, "fdd")
    reference = floor or ratio_to
    ratio = bool(reference) and reference.get("lve", 0) > 0
    header = (f"| {label} | LVE ({sq}) | EVE ({sq}) | FDD ({fdd_sq}) | \\|FDD\\| ({fdd_sq}) | "
              f"MVE ({units.get('length', 'unit')}) |")
    header += (" sequences |" if sequences else "") + (" LVE ÷ floor |" if ratio else "")
    lines = [header, "|" + " --- |" * (6 + sequences + ratio)]
    for name, o in rows + ([(FLOOR_NAME, floor)] if floor else []):
        cell = lambda k: number(o[k] * metric_scale(units, k)) if k in o else "–"  # noqa: E731
        line = f"| {name} | {cell('lve')} | {cell('eve')} | {cell('fdd')} | {cell('fdd_abs')} | {o['mve']:.3g} |"
        if sequences:
            line += f" {o.get('sequences', '–')} |"
        if ratio:  # only over the sequences the floor was measured on: a partial set of predictions gets none
            if complete is not None:
                same_set = name in complete or name == FLOOR_NAME
            else:
                same_set = o.get("sequences") == reference.get("sequences") or "sequences" not in o or "sequences" not in reference
            line += f" {o['lve'] / reference['lve']:.1f}× |" if "lve" in o and same_set else " – |"
        lines.append(line)
    return "\n".join(lines)


def markdown_table(data: dict) -> str:
    """The split's table: every model's overall scores at the report scale of the dataset's units, and the
    benchmark's recorded oracle floor with each model's LVE as a multiple of it, when there is one."""
    rows = [(name, scores["overall"]) for name, scores in data["models"].items()]
    floor = recorded_floor(data)
    oracle = next((scores for name, scores in rows if "oracle" in name), None)  # scored afresh (evaluate --oracle)
    complete = {name for name, scores in data["models"].items() if not scores.get("missing")}
    return score_table(rows, data.get("units", {}), floor, ratio_to=None if floor else oracle, complete=complete)


def per_subject_table(data: dict, metric: str) -> str | None:
    """One metric per subject (rows) and model (columns) at the report scale, the lowest of each row in bold;
    None when no model has per-subject scores."""
    models = {n: s.get("per_subject") or {} for n, s in data["models"].items()}
    subjects = sorted({subject for per in models.values() for subject in per})
    if not subjects:
        return None
    units = data.get("units", {})
    scale = metric_scale(units, metric)
    lines = [f"| subject ({metric.upper()}, {squared_unit(units, metric)}) | " + " | ".join(models) + " |", "|" + " --- |" * (len(models) + 1)]
    for subject in subjects:
        values = [per.get(subject, {}).get(metric) for per in models.values()]
        best = min((v for v in values if v is not None), default=None)
        cells = ["–" if v is None else (f"**{number(v * scale)}**" if v == best and len(models) > 1 else number(v * scale))
                 for v in values]
        lines.append(f"| {subject} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(data: dict, path: Path) -> Path:
    """Bar charts of LVE, EVE and |FDD| per model (report scale), with the recorded oracle floor as a dashed
    line when there is one; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = data.get("units", {})
    names = list(data["models"])
    floor = recorded_floor(data)
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(4 * len(BAR_METRICS), 3.2))
    for ax, (key, label) in zip(axes, BAR_METRICS):
        scale = metric_scale(units, key)
        values = [data["models"][n]["overall"].get(key, np.nan) * scale for n in names]
        colors = ["#999999" if "oracle" in n else f"C{k}" for k, n in enumerate(names)]
        ax.bar(range(len(names)), values, color=colors)
        if floor is not None and key in floor:
            ax.axhline(floor[key] * scale, color="#555555", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
        ax.set_ylabel(squared_unit(units, key))
    fig.suptitle(f"{data.get('dataset', '')}, split '{data['split']}'" + ("  (dashed: the oracle floor)" if floor else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_sheet(data: dict, vertices: np.ndarray, faces: np.ndarray, path: Path, size: int = 256) -> Path | None:
    """Each model's per-vertex mean squared error on the face, one shared colour scale; None without data."""
    from PIL import Image

    from mmtalker.render.compose import caption, colour_bar
    from mmtalker.render.renderer import MeshRenderer

    entries = [(n, np.asarray(s["per_vertex_sq_error"])) for n, s in data["models"].items() if s.get("per_vertex_sq_error")]
    entries = [(n, e) for n, e in entries if e.shape == (len(vertices),)]  # mesh_misfits names the others
    if not entries:
        return None
    from matplotlib import colormaps

    vmax = max(float(np.percentile(np.sqrt(e), 99)) for _, e in entries) or 1e-9
    renderer = MeshRenderer(faces, width=size, height=size)
    panels = []
    try:
        for name, err in entries:
            colors = colormaps["turbo"](np.clip(np.sqrt(err) / vmax, 0, 1))[:, :3]
            panels.append(caption(renderer.render(vertices, colors), name))
    finally:
        renderer.release()
    length = data.get("units", {}).get("length", "dataset units")
    sheet = np.concatenate(panels, axis=1)
    bar = colour_bar(sheet.shape[1], vmax, f"root mean squared error per vertex ({length})")
    Image.fromarray(np.concatenate([sheet, bar], axis=0)).save(path)
    return path


def mesh_misfits(data: dict, num_vertices: int) -> list[tuple[str, int]]:
    """``(model, its vertex count)`` for each model whose per-vertex errors do not fit a mesh of ``num_vertices``
    (scores of another dataset): :func:`heatmap_sheet` leaves them out."""
    errors = {n: s.get("per_vertex_sq_error") for n, s in data["models"].items()}
    return [(n, len(e)) for n, e in errors.items() if e and len(e) != num_vertices]


def merged_sections(loaded: list[tuple[Path, dict]]) -> list[tuple[str, dict]]:
    """The report's sections: score files of one dataset and split scored alike (same units, regions and floor) are
    one section whose table, charts and heatmap compare all their models on one scale; a model name found in two
    files is told apart by its file's name. Returns ``(source files as Markdown, scores)`` per section."""
    def same_rules(a: dict, b: dict) -> bool:
        return all(a.get(k) == b.get(k) for k in ("dataset", "split", "units", "regions", "oracle_floor"))

    sections: list[tuple[list[Path], dict]] = []
    for file, data in loaded:
        home = next((s for s in sections if same_rules(s[1], data)), None)
        if home is None:
            sections.append(([file], {**data, "models": dict(data["models"])}))
            continue
        home[0].append(file)
        for name, scores in data["models"].items():
            home[1]["models"][_unique(name, file, home[1]["models"])] = scores
    return [(", ".join(f"`{f}`" for f in files), data) for files, data in sections]


def _unique(name: str, file: Path, taken: dict) -> str:
    """``name``, or where another file's model has it, ``name [its run folder/file]`` (``runA/scores.json`` and
    ``runB/scores.json`` both name theirs "MMTalker (best)"), numbered if that too is taken: no model is dropped."""
    if name not in taken:
        return name
    candidate = f"{name} [{file.parent.name}/{file.stem}]" if file.parent.name else f"{name} [{file.stem}]"
    count = 2
    unique = candidate
    while unique in taken:
        unique, count = f"{candidate} ({count})", count + 1
    return unique


def write_report(score_files: list[Path], out: Path, dataset=None) -> Path:
    """Writes report.md and the figures into ``out``; returns the Markdown file's path."""
    score_files = list(dict.fromkeys(Path(f).resolve() for f in score_files))  # a file given twice counts once
    loaded = [(file, load_scores(file)) for file in score_files]  # every file checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# Comparison", ""]
    seen: dict[str, int] = {}
    for file, data in merged_sections(loaded):
        split = data["split"]
        seen[split] = seen.get(split, 0) + 1
        tag = split if seen[split] == 1 else f"{split}_{seen[split]}"  # one split scored by other rules: its own figures
        parts += [f"## {data.get('dataset', '')}: split `{split}`", "", f"From {file}.", "", markdown_table(data), ""]
        bars = bar_chart(data, out / f"metrics_{tag}.png")
        parts += [f"![metrics]({bars.name})", ""]
        for metric in ("lve", "eve"):
            table = per_subject_table(data, metric)
            if table is not None:
                parts += [table, ""]
        if dataset is not None:
            topo = dataset.topology()
            heat = heatmap_sheet(data, dataset.template(dataset.subjects[0]), topo.faces, out / f"heatmap_{tag}.png")
            misfits = mesh_misfits(data, topo.num_vertices)
            if misfits:
                models = ", ".join(f"{name} ({count} vertices)" for name, count in misfits)
                left = f"heatmap_{tag}.png is left out" if heat is None else f"they are left out of heatmap_{tag}.png"
                print(f"mmtalker report: note: {file}: the per-vertex errors of {models} do not fit the mesh of "
                      f"{dataset.root} ({topo.num_vertices} vertices); {left}", file=sys.stderr)
            if heat is not None:
                parts += ["Root mean squared error per vertex over the split's frames (one colour scale for all):", "",
                          f"![heatmap]({heat.name})", ""]
    md = out / "report.md"
    md.write_text("\n".join(parts))
    return md
