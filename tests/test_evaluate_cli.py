"""`mmtalker evaluate` on saved predictions: peers' file naming, region overrides, frame-weighted totals."""

import json
import re

import numpy as np
import pytest

from fake_talk import write_fake_dataset
from mmtalker.cli import main
from mmtalker.data.dataset import open_dataset
from mmtalker.eval import metrics


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("fake") / "data")


def test_scores_peer_style_predictions(dataset_dir, tmp_path, capsys):
    ds = open_dataset(dataset_dir)
    seqs = ds.sequences("test")
    pred_dir = tmp_path / "faceformer"
    pred_dir.mkdir()
    rng = np.random.default_rng(1)
    expected_frames = []
    for seq in seqs:
        gt = seq.vertices()
        for style in ("s01", "s02"):  # FaceFormer writes one file per conditioning subject, flattened
            pred = gt + rng.normal(0, 1e-3, gt.shape).astype(np.float32)
            np.save(pred_dir / f"{seq.key}_condition_{style}.npy", pred.reshape(len(pred), -1))
            expected_frames.append(metrics.region_max_sq_error(pred, gt, ds.region("lips")))
    out_json = tmp_path / "scores.json"
    code = main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--name", "FaceFormer",
                 "--json", str(out_json), "--per-subject"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| FaceFormer |" in printed and "LVE (m²" in printed
    scores = json.loads(out_json.read_text())["models"]["FaceFormer"]
    assert scores["overall"]["lve"] == pytest.approx(np.concatenate(expected_frames).mean(), rel=1e-5)
    assert scores["overall"]["sequences"] == 2 * len(seqs)
    assert set(scores["per_subject"]) == {"s01", "s02"}


def test_region_override_and_missing_predictions(dataset_dir, tmp_path, capsys):
    ds = open_dataset(dataset_dir)
    seq = ds.sequences("test")[0]
    pred_dir = tmp_path / "ours"
    pred_dir.mkdir()
    np.save(pred_dir / f"{seq.key}.npy", seq.vertices())  # a perfect prediction for one sequence only
    lips_file = tmp_path / "lve.txt"
    lips_file.write_text(", ".join(str(i) for i in range(10)))  # BIWI-style ", " separators
    out_json = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--regions", f"lips={lips_file}",
                 "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    assert "lve.txt" in out
    assert f"ours was scored on 1 of the split's {len(ds.sequences('test'))} sequences: no prediction for 1" in err
    overall = json.loads(out_json.read_text())["models"]["ours"]["overall"]
    assert overall["lve"] == 0.0 and overall["mve"] == 0.0


def test_merged_score_files_keep_every_model_of_the_same_name():
    """runA/scores.json, runB/scores.json, runC/scores.json each naming their model 'mmtalker': all three stay."""
    from pathlib import Path

    from mmtalker.eval.report import merged_sections

    def scores(lve):
        return {"dataset": "d", "split": "test", "units": {}, "models": {"mmtalker": {"overall": {"lve": lve, "mve": 1}}}}

    loaded = [(Path(f"{run}/scores.json"), scores(k)) for k, run in enumerate(("runA", "runB", "runC", "runC"))]
    ((_, merged),) = merged_sections(loaded)
    assert list(merged["models"]) == ["mmtalker", "mmtalker [runB/scores]", "mmtalker [runC/scores]",
                                      "mmtalker [runC/scores] (2)"]
    assert [m["overall"]["lve"] for m in merged["models"].values()] == [0, 1, 2, 3]


def test_region_files_in_folders_with_a_colon_and_keys_after_the_last_one(tmp_path):
    from mmtalker.eval.protocol import split_region_spec

    folder = tmp_path / "regions:v2"
    folder.mkdir()
    (folder / "lve.txt").write_text("1,2,3\n")
    whole = str(folder / "lve.txt")
    assert split_region_spec(whole) == (whole, None)  # the colon is the folder's
    assert split_region_spec(f"{folder}/masks.pkl:lips") == (f"{folder}/masks.pkl", "lips")
    assert split_region_spec("FLAME_masks.pkl:eye_region") == ("FLAME_masks.pkl", "eye_region")
    assert split_region_spec("none.txt") == ("none.txt", None)
    assert split_region_spec("c:dir/missing.txt") == ("c:dir/missing.txt", None)  # named whole when missing


def test_fdd_has_its_own_report_scale_where_the_dataset_gives_one():
    """VOCASET's papers print FDD ×1e-7 beside LVE ×1e-5: one scale for both put our FDD column 100× off theirs."""
    from mmtalker.data.dataset import load_preset
    from mmtalker.eval.report import per_subject_table, score_table

    units = load_preset("vocaset", "processed").units
    assert (units["report_scale"], units["fdd_report_scale"]) == (1e5, 1e7)
    table = score_table([("m", {"lve": 3.2e-5, "eve": 1e-6, "fdd": 4.1e-7, "fdd_abs": 5e-7, "mve": 1e-3})], units)
    header, _, row = table.splitlines()
    assert "LVE (m² ×1e-05)" in header and "FDD (m² ×1e-07)" in header and "\\|FDD\\| (m² ×1e-07)" in header
    assert row.startswith("| m | 3.2000 | 0.1000 | 4.1000 | 5.0000 |")
    same = {"length": "m", "report_scale": 1e5}  # no fdd_report_scale: FDD at the report scale, as before
    assert "FDD (m² ×1e-05)" in score_table([("m", {"fdd": 4.1e-7, "mve": 1e-3})], same)
    per = per_subject_table({"models": {"m": {"per_subject": {"s1": {"lve": 3.2e-5}}}}, "units": units}, "lve")
    assert "m² ×1e-05" in per and "3.2000" in per


def test_clear_errors(dataset_dir, tmp_path, capsys):
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(tmp_path / "nope")]) == 1
    assert "prediction folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(empty)]) == 1
    assert "no sequence of the split has a prediction" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(dataset_dir), "--split", "bogus", "--pred", str(empty)]) == 1
    assert "has no split 'bogus'" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(dataset_dir), "--regions", "mouth=x.txt", "--pred", str(empty)]) == 1
    assert "ROLE=FILE" in capsys.readouterr().err


def test_a_split_file_replaces_the_datasets_splits(dataset_dir, tmp_path, capsys):
    ds = open_dataset(dataset_dir)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for seq in ds.sequences():
        np.save(pred_dir / f"{seq.key}.npy", seq.vertices())
    split_file = tmp_path / "splits.json"  # FaceFormer-style: test = one subject's first two sentences
    split_file.write_text(json.dumps({"splits": {"test": {"subjects": ["s02"], "sentences": ["1-2"]}}}))
    out_json = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(dataset_dir), "--splits", str(split_file), "--pred", str(pred_dir),
                 "--json", str(out_json), "--per-subject"]) == 0
    scores = json.loads(out_json.read_text())["models"]["pred"]
    assert scores["overall"]["sequences"] == 2 and set(scores["per_subject"]) == {"s02"}
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"test": {"subjects": ["s09"]}}))
    assert main(["evaluate", "--data", str(dataset_dir), "--splits", str(bad), "--pred", str(pred_dir)]) == 1
    err = capsys.readouterr().err
    assert "s09" in err and "s01, s02" in err
    assert main(["evaluate", "--data", str(dataset_dir), "--splits", str(tmp_path / "none.json"), "--pred", str(pred_dir)]) == 1
    assert "none.json" in capsys.readouterr().err


def test_a_checkpoint_trained_with_a_split_file_is_noted_when_scored_by_other_splits(tmp_path):
    from mmtalker.commands.evaluate import _split_file_notes
    from mmtalker.train import checkpoint as ckpt

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"test": {"subjects": ["s02"], "sentences": ["1-2"]}}))
    copy = tmp_path / "copy.json"  # the same splits under another name
    copy.write_text(json.dumps({"splits": {"test": {"subjects": ["s02"], "sentences": [1, 2]}}}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"test": {"subjects": ["s01"]}}))

    def checkpoint(name, splits):
        folder = tmp_path / name
        folder.mkdir()
        training = {"data": {"path": "data", "splits": splits}}
        (folder / ckpt.CONFIG).write_text(json.dumps({"format": ckpt.FORMAT, "version": ckpt.VERSION,
                                                      "extras": {"training": training}}))
        return folder

    with_file, without = checkpoint("with", str(mine)), checkpoint("without", None)
    (note,) = _split_file_notes([with_file, without], None)
    assert str(with_file) in note and str(mine) in note and "the dataset's own splits" in note
    assert _split_file_notes([with_file], mine) == [] and _split_file_notes([with_file], copy) == []
    (note,) = _split_file_notes([with_file], other)
    assert str(other) in note and f"--splits {mine}" in note
    assert _split_file_notes([without], other) == []  # trained on the dataset's splits: scoring by others is a choice


def test_a_checkpoint_of_another_dataset_or_frame_rate_is_noted(dataset_dir, tmp_path):
    from mmtalker.commands.evaluate import _dataset_notes
    from mmtalker.train import checkpoint as ckpt

    manifest = open_dataset(dataset_dir).manifest

    def checkpoint(name, dataset):
        folder = tmp_path / name
        folder.mkdir()
        (folder / ckpt.CONFIG).write_text(json.dumps({"format": ckpt.FORMAT, "version": ckpt.VERSION,
                                                      "extras": {"dataset": dataset}}))
        return folder

    same = checkpoint("same", {"name": manifest.name, "path": "elsewhere", "fps": manifest.fps})
    other = checkpoint("other", {"name": "vocaset", "path": "/data/vocaset", "fps": 60.0, "units": {"length": "mm"}})
    unrecorded = checkpoint("old", {})
    assert _dataset_notes([same, unrecorded], manifest) == []
    named, unit, rate = _dataset_notes([other], manifest)
    assert "'vocaset' (/data/vocaset)" in named and f"'{manifest.name}'" in named
    assert "trained on motion in 'mm'" in unit and f"in '{manifest.units['length']}'" in unit
    assert "60 fps" in rate and f"{manifest.fps:g} fps" in rate


def test_a_roles_next_name_serves_when_the_first_ones_file_is_missing(dataset_dir, tmp_path, capsys):
    """VOCASET's preset names FLAME_masks.pkl's 'lips' first and regions/lve.txt second: a user with only lve.txt
    is scored on it, and the repeated entries dropped from a region file are reported."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    lips = [str(i) for i in open_dataset(data).region("lips")]
    (data / "regions" / "lve.txt").write_text(",".join(lips + lips[:2]) + "\n")  # two repeated
    manifest["regions"] = {"lips": {"file": "FLAME_masks.pkl", "key": "lips"}, "lve": "regions/lve.txt",
                           **{k: v for k, v in manifest["regions"].items() if k != "lips"}}
    (data / "manifest.json").write_text(json.dumps(manifest))
    ds = open_dataset(data)
    assert not ds.region_present("lips") and ds.region_present("lve") and ds.region_present("eye_region")
    pred = tmp_path / "pred"
    pred.mkdir()
    for seq in ds.sequences("test"):
        np.save(pred / f"{seq.key}.npy", seq.vertices())
    assert main(["evaluate", "--data", str(data), "--pred", str(pred)]) == 0
    assert f"lips: manifest region 'lve' ({len(lips)} vertices; 2 repeated entries dropped)" in capsys.readouterr().out
    (data / "regions" / "lve.txt").unlink()  # neither file there: the first name's missing file is the error
    assert main(["evaluate", "--data", str(data), "--pred", str(pred)]) == 1
    assert "FLAME_masks.pkl: region file for 'lips' not found" in capsys.readouterr().err


def test_predictions_at_another_rate_or_as_long_as_the_audio_are_fitted_with_a_note(dataset_dir, tmp_path, capsys):
    import soundfile as sf

    from mmtalker.data.fps import resample_frames

    ds = open_dataset(dataset_dir)
    seqs = ds.sequences("test")
    at_30 = tmp_path / "at30"
    at_30.mkdir()
    for seq in seqs:  # the truth, stored at 30 fps in npz (the dataset is at 25)
        np.savez(at_30 / f"{seq.key}.npz", vertices=resample_frames(seq.vertices(), seq.fps, 30.0), fps=30.0)
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(at_30), "--json", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    assert "predictions stored at 30 fps" in err and "resampled to the dataset's 25 fps" in err
    assert json.loads((tmp_path / "a.json").read_text())["models"]["at30"]["overall"]["lve"] < 1e-8  # resampled twice: nearly the truth

    # audio that runs 0.4 s past the motion, and predictions sized by the audio (the truth, then its last frame held)
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "duration_tolerance": 0.5}))
    longer = tmp_path / "by_audio"
    longer.mkdir()
    for seq in open_dataset(data).sequences("test"):
        audio = seq.audio()
        sf.write(data / "wav" / f"{seq.key}.wav", np.concatenate([audio, np.zeros(int(0.4 * 16000), np.float32)]), 16000)
        extra = round(0.4 * seq.fps)
        truth = seq.vertices()
        np.save(longer / f"{seq.key}.npy", np.concatenate([truth, np.repeat(truth[-1:], extra, 0)]))
    assert main(["evaluate", "--data", str(data), "--pred", str(longer), "--json", str(tmp_path / "b.json")]) == 0
    err = capsys.readouterr().err
    assert "as long as their audio, which runs past the motion" in err and "were cut to the motion" in err
    assert json.loads((tmp_path / "b.json").read_text())["models"]["by_audio"]["overall"]["lve"] < 1e-9
    np.save(longer / f"{seqs[0].key}.npy", np.concatenate([truth] * 2))  # as long as neither: still refused
    assert main(["evaluate", "--data", str(data), "--pred", str(longer)]) == 1
    assert f"{seqs[0].key}.npy: has" in capsys.readouterr().err


def test_report_table_charts_and_heatmap(dataset_dir, tmp_path):
    from PIL import Image

    ds = open_dataset(dataset_dir)
    pred_dir = tmp_path / "model"
    pred_dir.mkdir()
    for seq in ds.sequences("test"):
        gt = seq.vertices()
        noisy = gt.copy()
        noisy[:, ds.region("lips")] += 0.002  # errors on the lips only
        np.save(pred_dir / f"{seq.key}.npy", noisy)
    scores = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred_dir), "--json", str(scores)]) == 0
    per_vertex = np.asarray(json.loads(scores.read_text())["models"]["model"]["per_vertex_sq_error"])
    lips = ds.region("lips")
    assert np.allclose(per_vertex[lips], 3 * 0.002**2, rtol=1e-3)
    assert np.all(np.delete(per_vertex, lips) < 1e-12)
    out = tmp_path / "report"
    assert main(["report", str(scores), "--data", str(dataset_dir), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| model |" in md and "metrics_test.png" in md and "heatmap_test.png" in md
    heat = np.asarray(Image.open(out / "heatmap_test.png").convert("RGB"))
    assert heat.std() > 10  # a rendered face, not a blank image
    assert main(["report", str(scores), "--out", str(out)]) == 1  # no silent overwrite
    # the same folder in the processed layout (no manifest.json: its facts come from a preset): --preset opens it
    import shutil

    processed = tmp_path / "processed"
    shutil.copytree(dataset_dir, processed)
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps({**json.loads((processed / "manifest.json").read_text()), "layout": "processed"}))
    (processed / "manifest.json").unlink()
    assert main(["report", str(scores), "--data", str(processed), "--preset", str(preset), "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "heatmap_test.png").is_file()
    # the colour bar under the faces: its scale ends at the 99th percentile of the per-vertex RMS error (0.002·√3)
    from mmtalker.render.compose import colour_bar

    bar = colour_bar(heat.shape[1], float(np.sqrt(3) * 0.002), "root mean squared error per vertex (m)")
    assert np.array_equal(heat[-bar.shape[0]:], bar)
    # per-subject tables at the report scale, one column per model
    per_subject = json.loads(scores.read_text())["models"]["model"]["per_subject"]
    assert ds.manifest.units.get("report_scale", 1.0) == 1.0  # this dataset's scores print as they are, in m²
    for subject, o in per_subject.items():
        assert f"| {subject} | {o['lve']:.4g} |" in md and o["lve"] > 0
    assert "| subject (LVE, m²) | model |" in md and "| subject (EVE, m²) | model |" in md


def test_per_subject_table_marks_the_lowest(capsys):
    from mmtalker.eval.report import per_subject_table

    data = {"units": {"length": "mm", "report_scale": 1.0}, "models": {
        "A": {"per_subject": {"s1": {"lve": 2.0}, "s2": {"lve": 1.0}}},
        "B": {"per_subject": {"s1": {"lve": 1.5}}},
    }}
    table = per_subject_table(data, "lve").splitlines()
    assert table[0] == "| subject (LVE, mm²) | A | B |"
    assert table[2:] == ["| s1 | 2.0000 | **1.5000** |", "| s2 | **1.0000** | – |"]
    assert per_subject_table({"models": {"A": {}}}, "lve") is None


def test_small_scores_keep_their_digits():
    from mmtalker.eval.report import number, score_table

    assert number(0.71404) == "0.7140" and number(0.0) == "0.0000" and number(1.2345e-5) == "1.234e-05"
    table = score_table([("m", {"lve": 1.2345e-5, "mve": 3e-4})], {"length": "m"})
    assert "| m | 1.234e-05 | – | – | – | 0.0003 |" in table


def test_recorded_oracle_floor_in_table_and_report(dataset_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "with_floor"
    shutil.copytree(dataset_dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    floor = {"lve": 2e-6, "eve": 1e-6, "fdd": 5e-7, "fdd_abs": 6e-7, "mve": 1e-4, "sequences": 2, "frames": 10}
    manifest.setdefault("extra", {})["oracle_floor"] = {"test": floor}
    (data / "manifest.json").write_text(json.dumps(manifest))
    ds = open_dataset(data)
    pred_dir = tmp_path / "ours"
    pred_dir.mkdir()
    for seq in ds.sequences("test"):
        gt = seq.vertices()
        np.save(pred_dir / f"{seq.key}.npy", gt + np.float32(0.003))  # every vertex 0.003 off on each axis
    scores = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(data), "--pred", str(pred_dir), "--json", str(scores)]) == 0
    printed = capsys.readouterr().out
    lve = 3 * 0.003**2  # squared distance of every vertex, so every frame's max over the lips
    scale = ds.manifest.units["report_scale"]
    row = next(line for line in printed.splitlines() if line.startswith("| oracle floor"))
    assert f"| {floor['lve'] * scale:.4g} |" in row and row.endswith("| 1.0× |")
    model_row = next(line for line in printed.splitlines() if line.startswith("| ours |"))
    assert model_row.endswith(f"| {lve / floor['lve']:.1f}× |")
    assert json.loads(scores.read_text())["oracle_floor"]["lve"] == floor["lve"]
    out = tmp_path / "report"
    assert main(["report", str(scores), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| oracle floor (recorded with the benchmark) |" in md and f"| {lve / floor['lve']:.1f}× |" in md
    header, rule = next((a, b) for a, b in zip(md.splitlines(), md.splitlines()[1:]) if b.startswith("| ---"))
    cells = lambda line: len(re.split(r"(?<!\\)\|", line)) - 2  # noqa: E731  (an escaped \| is no separator)
    assert cells(header) == cells(rule) == 7  # model, LVE, EVE, FDD, |FDD|, MVE, LVE ÷ floor
    # a prediction for one of the two sequences: the floor row stays, the ratio across different sets does not
    (pred_dir / f"{ds.sequences('test')[1].key}.npy").unlink()
    assert main(["evaluate", "--data", str(data), "--pred", str(pred_dir)]) == 0
    printed, err = capsys.readouterr()
    assert next(line for line in printed.splitlines() if line.startswith("| ours |")).endswith("| – |")
    assert "scored on 1 of the split's 2 sequences" in err and "LVE ÷ floor is left out" in err
    # other lips than the manifest's: the floor recorded on the manifest's is left out, with a note saying so
    lips_file = tmp_path / "lips.txt"
    lips_file.write_text("0 1 2")
    assert main(["evaluate", "--data", str(data), "--pred", str(pred_dir), "--regions", f"lips={lips_file}"]) == 0
    printed, err = capsys.readouterr()
    assert "oracle floor" not in printed and "÷ floor" not in printed and "recorded floor is left out" in err
    # --oracle on data without oracle motion: one clear error, not a hint about prediction file names
    assert main(["evaluate", "--data", str(data), "--pred", str(pred_dir), "--oracle"]) == 1
    assert "has no oracle motion to score with --oracle" in capsys.readouterr().err


def test_per_sequence_scores_add_up_to_the_totals(dataset_dir):
    from mmtalker.eval.protocol import regions_for, score

    ds = open_dataset(dataset_dir)
    seqs = ds.sequences("test")
    rng = np.random.default_rng(2)
    noisy = {s.key: [s.vertices() + rng.normal(0, 1e-3, s.vertices().shape).astype(np.float32) for _ in range(2)] for s in seqs}
    result = score("m", seqs, lambda seq: noisy[seq.key], ds, regions_for(ds))
    assert set(result.per_sequence) == {s.key for s in seqs}
    for seq in seqs:  # a sequence's own LVE is the mean over its predictions of the metric, by hand
        expected = np.mean([metrics.lve(p, seq.vertices(), ds.region("lips")) for p in noisy[seq.key]])
        assert result.per_sequence[seq.key]["lve"] == pytest.approx(expected, rel=1e-6)
    frames = np.array([result.per_sequence[s.key]["frames"] for s in seqs], float)
    lves = np.array([result.per_sequence[s.key]["lve"] for s in seqs])
    assert (lves * frames).sum() / frames.sum() == pytest.approx(result.overall["lve"], rel=1e-6)


def test_paired_bootstrap_of_the_comparison():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from compare_summary import paired_bootstrap, seed_mean

    rng = np.random.default_rng(0)
    base = {f"s{i}": {"lve": float(v), "frames": int(f)} for i, (v, f) in enumerate(zip(rng.uniform(1, 2, 20), rng.integers(50, 100, 20)))}
    better = {k: {"lve": v["lve"] - 0.1, "frames": v["frames"]} for k, v in base.items()}  # lower on every sequence
    r = paired_bootstrap(better, base, "lve", resamples=2000)
    assert r["diff"] == pytest.approx(-0.1) and r["p_lower"] == 1.0 and r["ci95"][1] < 0 and r["sequences"] == 20
    same = paired_bootstrap(base, base, "lve", resamples=500)
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["p_lower"] == 0.0
    # mixed: lower on half the sequences, higher on the others by as much: the interval straddles 0
    mixed = {k: {"lve": v["lve"] + (0.1 if i % 2 else -0.1), "frames": 60} for i, (k, v) in enumerate(base.items())}
    flat = {k: {"lve": v["lve"], "frames": 60} for k, v in base.items()}
    m = paired_bootstrap(mixed, flat, "lve", resamples=4000)
    assert m["ci95"][0] < 0 < m["ci95"][1] and 0.3 < m["p_lower"] < 0.7
    # seeds are averaged per sequence first
    avg = seed_mean([{"a": {"lve": 1.0, "frames": 10}}, {"a": {"lve": 3.0, "frames": 10}, "b": {"lve": 5.0, "frames": 4}}])
    assert avg == {"a": {"lve": 2.0, "frames": 10.0}}


def test_output_span_floor_of_a_linear_decoder():
    """benchmarks/output_span.py: motion inside a VOCA decoder's span projects with no error; with a decoder
    that cannot move the eyes, the eye floor is the eye motion itself (per frame the max over the region of
    its squared length, over the first and last frames only)."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from output_span import span_floor

    from mmtalker.errors import MMTalkerError
    from mmtalker.models.voca import VOCA, VocaConfig

    V, T = 6, 10
    rng = np.random.default_rng(1)
    template = rng.normal(size=(V, 3)).astype(np.float32)
    eyes, lips = np.array([0, 1]), np.array([4, 5])
    lip_dir, eye_dir = np.zeros((V, 3)), np.zeros((V, 3))
    lip_dir[4:] = rng.normal(size=(2, 3))
    eye_dir[:2] = rng.normal(size=(2, 3))
    a, b = rng.normal(size=T), rng.normal(size=T)
    motion = a[:, None, None] * lip_dir + b[:, None, None] * eye_dir  # (T, V, 3)
    seq = SimpleNamespace(key="s", subject="x", oracle=lambda: template + motion)
    data = SimpleNamespace(template=lambda subject: template)

    model = VOCA(VocaConfig(subjects=["x"], audio_dim=4, latent=2), template, motion_scale=1.0)
    with torch.no_grad():
        model.decoder.weight[:, 0] = torch.from_numpy(lip_dir.reshape(-1)).float()
        model.decoder.weight[:, 1] = torch.from_numpy(eye_dir.reshape(-1)).float()
    full = span_floor(model, [seq], data, eyes, lips, edge_frames=2)
    assert full["eyes_at_edges"] < 1e-10 and full["lips"] < 1e-10

    with torch.no_grad():
        model.decoder.weight[:, 1] = 0.0  # the eyes cannot move now
    lips_only = span_floor(model, [seq], data, eyes, lips, edge_frames=2)
    edge = [0, 1, T - 2, T - 1]
    expected = (np.square(motion[edge][:, eyes]).sum(-1).max(1)).mean()
    assert lips_only["eyes_at_edges"] == pytest.approx(expected, rel=1e-6) and lips_only["lips"] < 1e-10

    with pytest.raises(MMTalkerError, match="run/best.*not linear"):  # other model kinds are refused by name
        span_floor(type("FaceFormer", (), {})(), [seq], data, eyes, lips, 2, "run/best")


def test_eye_events_bias_variance_split_hand_cases():
    """benchmarks/eye_events.py: errors common to every clip are all bias; errors that cancel over clips are
    all variance; the two add up to the mean squared error."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from eye_events import bias_variance

    e = np.zeros((2, 1, 3))
    e[..., 0] = [[1.0], [2.0]]  # 2 frames, 1 vertex: squared errors 1 and 4
    bias, var, n = bias_variance([e, e.copy()])
    assert (bias, var, n) == (2.5, 0.0, 2)
    bias, var, n = bias_variance([e, -e])
    assert (bias, var, n) == (0.0, 2.5, 2)
    f = np.zeros((2, 1, 3))  # one clip right, one off by e: mean error e/2, bias 2.5/4, total 2.5/2
    bias, var, _ = bias_variance([e, f])
    assert abs(bias - 0.625) < 1e-12 and abs(var - 0.625) < 1e-12
    assert np.isnan(bias_variance([])[0])


def test_long_audio_scores_whole_stretches_and_refuses_data_not_made_by_the_generator(dataset_dir):
    """benchmarks/long_audio_accuracy.py: each stretch is scored on its own frames only, every clip's score is
    kept, and a dataset without the generator's record is refused by name."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from mmtalker.errors import MMTalkerError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from long_audio_accuracy import LongClip, make_long_clips, score

    V = 4
    regions = SimpleNamespace(lips=np.array([0, 1]), eyes=np.array([2, 3]), upper=None)
    dataset = SimpleNamespace(template=lambda subject: np.zeros((V, 3), np.float32))
    truth = np.zeros((7, V, 3), np.float32)
    pred = truth.copy()
    pred[3:6, 0, 0] = 2.0  # the second 3-frame stretch: lip error 4 on each frame
    clips = [LongClip("a", None, truth, None, 30.0), LongClip("b", None, truth[:6], None, 30.0)]
    whole, parts = score([pred, pred[:6]], clips, dataset, regions, segment=3, segments=2)
    assert [p["lve"] for p in parts] == [0.0, 4.0] and [p["frames"] for p in parts] == [6, 6]
    assert whole["lve"] == pytest.approx(2 * 3 * 4.0 / 13) and whole["eve"] == 0.0
    assert whole["per_clip"]["a"]["lve"] == pytest.approx(12 / 7) and whole["per_clip"]["b"]["lve"] == 2.0
    with pytest.raises(MMTalkerError, match="not made by `mmtalker data synth`"):
        make_long_clips(open_dataset(dataset_dir), None, 2)


def test_phonetic_ceiling_sees_every_phone_of_a_frame():
    """benchmarks/phonetic_ceiling.py: each frame holds the phones' shares of its span (a phone shorter than a
    frame still shows), the stressed share, and the current phone's centre offset and length, by hand."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from mmtalker.errors import MMTalkerError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from phonetic_ceiling import phone_track

    fps = 10.0  # frames at 0, 0.1, 0.2 s; frame t spans [t − 0.05, t + 0.05] s
    phones = [{"symbol": "_", "start": 0.0, "end": 0.08}, {"symbol": "b", "start": 0.08, "end": 0.1, "stress": 0},
              {"symbol": "a", "start": 0.1, "end": 0.3, "stress": 1}]
    seq = SimpleNamespace(alignment=lambda: phones, num_frames=3, key="s_a")
    vocab = {"<unk>": 0, "_": 1, "b": 2, "a": 3}
    track = phone_track(seq, vocab, fps)
    assert track.shape == (3, len(vocab) + 4)
    np.testing.assert_allclose(track[1:, :4].sum(1), 1.0, atol=1e-6)  # frames inside the clip are fully shared out
    np.testing.assert_allclose(track[:, :4], [[0, 0.5, 0, 0], [0, 0.3, 0.2, 0.5], [0, 0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(track[:, 4], [0, 0.5, 1], atol=1e-6)  # stressed share
    # the phone at each frame's time: _ (centre 0.4 frames), a (centre 2.0), a
    np.testing.assert_allclose(track[:, 5], [0.4, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(track[:, 6], [0.8 / 5, 2 / 5, 2 / 5], atol=1e-6)
    np.testing.assert_allclose(track[:, 7], np.log(np.array([0.8, 2, 2]) + 1e-3), atol=1e-5)
    with pytest.raises(MMTalkerError, match="no phone alignment"):
        phone_track(SimpleNamespace(alignment=lambda: [], num_frames=3, key="s_b"), vocab, fps)


def test_ratio_to_an_oracle_scored_afresh():
    """With --oracle the floor is one of the rows: each row's LVE ÷ floor is to it, and no row is added."""
    from types import SimpleNamespace

    from mmtalker.commands.evaluate import ORACLE_NAME, format_table

    rows = [SimpleNamespace(name="m", overall={"lve": 3e-6, "mve": 1e-4, "sequences": 4}, missing=[]),
            SimpleNamespace(name="part", overall={"lve": 2e-6, "mve": 1e-4, "sequences": 1}, missing=["a", "b", "c"]),
            SimpleNamespace(name=ORACLE_NAME, overall={"lve": 1.5e-6, "mve": 1e-4, "sequences": 4}, missing=[])]
    lines = format_table(rows, {"length": "m", "report_scale": 1e5}).splitlines()
    assert lines[0].endswith("| LVE ÷ floor |") and len(lines) == 5
    assert lines[2].endswith("| 4 | 2.0× |") and lines[3].endswith("| 1 | – |") and lines[4].endswith("| 4 | 1.0× |")


def test_report_table_of_an_oracle_scored_file_has_the_ratio():
    """A score file from `evaluate --oracle` (the demo's) has the oracle as a model: the report's ratio is to it."""
    from mmtalker.eval.report import markdown_table

    data = {"split": "test", "units": {"length": "m", "report_scale": 1e5}, "oracle_floor": {"lve": 9.0, "mve": 1.0},
            "models": {"m": {"overall": {"lve": 3e-6, "mve": 1e-4, "sequences": 4}},
                       "oracle (floor)": {"overall": {"lve": 1.5e-6, "mve": 1e-4, "sequences": 4}}}}
    lines = markdown_table(data).splitlines()
    assert lines[0].endswith("| LVE ÷ floor |") and lines[2].endswith("| 2.0× |") and lines[3].endswith("| 1.0× |")
    assert len(lines) == 4  # no recorded-floor row beside the oracle scored afresh


def test_a_model_with_several_predictions_per_sequence_keeps_its_ratio():
    """--unseen-styles all (or FaceFormer's condition files): more predictions than sequences, every sequence covered."""
    from types import SimpleNamespace

    from mmtalker.commands.evaluate import format_table

    rows = [SimpleNamespace(name="all styles", overall={"lve": 3e-6, "mve": 1e-4, "sequences": 48}, missing=[]),
            SimpleNamespace(name="part", overall={"lve": 2e-6, "mve": 1e-4, "sequences": 8}, missing=["s_1"])]
    floor = {"lve": 1.5e-6, "mve": 1e-4, "sequences": 8}
    lines = format_table(rows, {"length": "m", "report_scale": 1e5}, floor).splitlines()
    assert lines[2].endswith("| 48 | 2.0× |") and lines[3].endswith("| 8 | – |") and lines[4].endswith("| 1.0× |")


def test_names_must_match_the_folders_and_be_unique(dataset_dir, tmp_path, capsys):
    """--name beyond the --pred folders was dropped, and two models of one name kept one in --json."""
    ds = open_dataset(dataset_dir)
    pred = tmp_path / "p"
    pred.mkdir()
    for seq in ds.sequences("test"):
        np.save(pred / f"{seq.key}.npy", seq.vertices())
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred), "--name", "A", "--name", "B"]) == 1
    assert "--name: gives 2 names for 1 --pred folders" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred), "--pred", str(pred),
                 "--name", "X", "--name", "X", "--json", str(tmp_path / "s.json")]) == 1
    assert "two models would be called 'X'" in capsys.readouterr().err and not (tmp_path / "s.json").exists()


def test_score_files_of_one_split_make_one_comparison_and_other_rules_their_own(dataset_dir, tmp_path):
    """Models scored in separate evaluate runs on one split are one table, one chart and one heatmap scale (two
    identical sections with a colour scale each misled); a file scored on other regions keeps a section of its own."""
    ds = open_dataset(dataset_dir)
    files = []
    for k, offset in enumerate((0.001, 0.003, 0.002)):
        pred = tmp_path / f"p{k}"
        pred.mkdir()
        for seq in ds.sequences("test"):
            np.save(pred / f"{seq.key}.npy", seq.vertices() + np.float32(offset))
        files.append(tmp_path / f"s{k}.json")
        regions = ["--regions", f"lips={dataset_dir / 'regions' / 'eye_region.txt'}"] if k == 2 else []
        assert main(["evaluate", "--data", str(dataset_dir), "--pred", str(pred), "--json", str(files[-1]), *regions]) == 0
    out = tmp_path / "rep"
    assert main(["report", *map(str, files), "--data", str(dataset_dir), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert md.count("split `test`") == 2 and f"From `{files[0]}`, `{files[1]}`." in md
    first = md[: md.index(f"From `{files[2]}`")]
    assert "| p0 |" in first and "| p1 |" in first and "| p2 |" not in first
    assert "![metrics](metrics_test.png)" in md and "![metrics](metrics_test_2.png)" in md
    assert (out / "heatmap_test.png").is_file() and (out / "heatmap_test_2.png").is_file()
