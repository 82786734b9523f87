"""Damaged datasets, predictions and score files: one clear error naming the file, or a note when something is skipped.

Each row hands one damaged thing to a real subcommand through ``mmtalker.cli.main``: a region file that exists but
is invalid, a region setting the dataset lacks, a motion file missing beside its wav, a prediction of the wrong
length, a hand-edited score file, scores of another mesh. Errors follow ``mmtalker.errors``: exit code 1, one
stderr line naming the file (or setting) and the problem, no traceback; a note is one stderr line and the command
goes on.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest
import yaml

from fake_talk import write_fake_dataset
from mmtalker.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_MODEL = {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 16, "gcn_layers": 1, "num_region_tokens": 4, "heads": 2,
              "audio_layers": 1, "regressor_hidden": 16, "regressor_layers": [8]}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A small sound dataset, a one-epoch training config for it and its scores from perfect predictions."""
    root = tmp_path_factory.mktemp("world")
    data = write_fake_dataset(root / "data", clips_per_subject=2)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "base": str(CONFIGS / "mmtalker_synth.yaml"),
        "data": {"augment_variants": 0, "window_frames": 20, "cache_dir": str(root / "cache"), "val_max_clips": 1},
        "model": {**TINY_MODEL, "eye_pathway": False}, "sampler": {"points": 16},
        "optim": {"epochs": 1, "max_minutes": None, "batch_size": 2, "device": "cpu"},
    }))
    pred = root / "pred"
    pred.mkdir()
    for npy in sorted((data / "vertices_npy").glob("*.npy")):
        shutil.copy(npy, pred / npy.name)
    scores = root / "scores.json"
    assert main(["evaluate", "--data", str(data), "--pred", str(pred), "--name", "perfect", "--json", str(scores)]) == 0
    return {"root": root, "data": data, "config": config, "pred": pred, "scores": scores}


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``mmtalker argv``; an exception escaping main fails the test."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # noqa: BLE001 - the point of these tests
        pytest.fail(f"mmtalker {' '.join(map(str, argv))} raised {type(exc).__name__}: {exc} (a traceback, not a clear error)")
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_error(argv: list, capsys, *names: str) -> str:
    """Exit code 1 and one stderr line ``mmtalker <command>: error: ...`` naming ``names``."""
    code, out, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip() and "warning" not in line.lower()]
    assert code == 1, f"exit code {code}; stderr: {err[-800:]}; stdout: {out[-300:]}"
    assert "Traceback" not in err + out
    assert len(lines) == 1, f"expected one error line, got {len(lines)}: {err[-800:]}"
    assert lines[0].startswith(f"mmtalker {argv[0]}: error: "), lines[0]
    shown = re.sub(r"/\S*?/pytest-\d+/[^/\s:]+", "<tmp>", lines[0])  # the test's own folder name holds the row's words
    for name in names:
        assert name.lower() in shown.lower(), f"{name!r} not named in: {lines[0]}"
    return lines[0]


def _copy_data(world, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world["data"], tmp_path / "data"))


def _edit_manifest(data: Path, edit) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))


def _train(world, data: Path, tmp_path: Path, *settings: str) -> list:
    argv = ["train", "--config", world["config"], "--data", data, "--out", tmp_path / "run"]
    for setting in settings:
        argv += ["--set", setting]
    return argv


# --------------------------------------------------------------------------------- bug 1: training regions
def test_train_refuses_a_region_file_with_an_index_out_of_range(world, tmp_path, capsys):
    """regions/lips.txt holding 99999 (the face has 81 vertices) stops training, as evaluate stops, naming the file."""
    data = _copy_data(world, tmp_path)
    (data / "regions" / "lips.txt").write_text("1,2,99999\n")
    assert_clear_error(_train(world, data, tmp_path), capsys, "lips.txt", "99999")
    assert not (tmp_path / "run" / "last").exists()
    assert_clear_error(["evaluate", "--data", data, "--pred", world["pred"]], capsys, "lips.txt", "99999")


def test_peer_training_refuses_an_invalid_region_file(world, tmp_path, capsys):
    """The peers read the regions through the same function: a damaged upper_face file stops a VOCA run too."""
    data = _copy_data(world, tmp_path)
    (data / "regions" / "upper_face.txt").write_text("3\n-4\n")
    argv = ["train", "--config", CONFIGS / "voca_synth.yaml", "--data", data, "--out", tmp_path / "run",
            "--set", "model.audio_encoder=logmel", "--set", "model.audio_finetune=0", "--set", "optim.device=cpu"]
    assert_clear_error(argv, capsys, "upper_face.txt", "negative")


def test_train_refuses_a_region_setting_the_dataset_lacks(world, tmp_path, capsys):
    """A typo in loss.lip_region (or in loss.eye_region while loss.eyes weights it) names the setting and the
    dataset's regions instead of training without lip weighting and LVE."""
    data = world["data"]
    line = assert_clear_error(_train(world, data, tmp_path, "loss.lip_region=nonexistent"), capsys,
                              "loss.lip_region", "nonexistent", "lips, eye_region, upper_face")
    assert "data" in line
    assert_clear_error(_train(world, data, tmp_path, "loss.eye_region=eyez"), capsys,
                       "loss.eye_region", "eyez", "loss.eyes", "lips, eye_region, upper_face")
    assert not (tmp_path / "run" / "last").exists()


def test_train_on_a_dataset_without_an_eye_region_notes_that_eve_is_not_scored(world, tmp_path, capsys):
    """The documented fallback (BIWI, Multiface: no eye region, loss.eyes: 0) trains, and says once what is skipped."""
    data = _copy_data(world, tmp_path)
    _edit_manifest(data, lambda m: m["regions"].pop("eye_region"))
    code, out, err = run_cli(_train(world, data, tmp_path, "loss.eyes=0"), capsys)
    assert code == 0, err[-800:]
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "EVE" in notes[0] and "'eye_region'" in notes[0] and "FDD" not in notes[0], err[-800:]
    assert (tmp_path / "run" / "results.json").is_file()


def test_train_without_an_eye_region_file_it_does_not_need_trains_and_says_so(world, tmp_path, capsys):
    """FaceFormer's processed VOCASET has no FLAME_masks.pkl: with the lips from another region and loss.eyes: 0 the
    run trains (EVE and FDD unscored, as a note says), instead of stopping at the eye region's missing file; while
    loss.eyes weights it, the missing file is the error."""
    data = _copy_data(world, tmp_path)
    (data / "regions" / "eye_region.txt").unlink()
    (data / "regions" / "upper_face.txt").unlink()
    assert_clear_error(_train(world, data, tmp_path, "loss.eyes=1"), capsys, "eye_region.txt", "not found", "loss.eyes: 0")
    code, out, err = run_cli(_train(world, data, tmp_path, "loss.eyes=0"), capsys)
    assert code == 0, err[-800:]
    (note,) = [line for line in err.splitlines() if "note:" in line]
    assert "EVE (no region 'eye_region': its file is missing) and FDD (no region 'upper_face': its file is missing)" in note
    # and the run's scores can be had the same way: EVE and FDD unscored, said, not an error
    code, out, err = run_cli(["evaluate", "--data", data, "--pred", world["pred"]], capsys)
    assert code == 0, err
    assert "eyes: not scored: the file of manifest region 'eye_region' is missing" in out
    assert "upper: not scored: the file of manifest region 'upper_face' is missing" in out


def test_a_damaged_test_file_stops_training_before_it_starts(world, tmp_path, capsys):
    """A NaN in a test sequence's motion (or its empty audio) used to surface only when the finished run was scored."""
    data = _copy_data(world, tmp_path)
    _edit_manifest(data, lambda m: m.update(splits={"train": {"subjects": "*", "sentences": [1]},
                                                    "val": {"subjects": ["s01"], "sentences": [2]},
                                                    "test": {"subjects": ["s02"], "sentences": [2]}}))
    npy = data / "vertices_npy" / "s02_sentence02.npy"
    motion = np.load(npy)
    motion[3, 0, 0] = np.nan
    np.save(npy, motion)
    assert_clear_error(_train(world, data, tmp_path), capsys, "s02_sentence02.npy", "NaN")
    assert not (tmp_path / "run" / "last").exists()
    np.save(npy, np.nan_to_num(motion))
    sf.write(data / "wav" / "s02_sentence02.wav", np.zeros(0, np.float32), 16000)
    assert_clear_error(_train(world, data, tmp_path), capsys, "s02_sentence02.npy", "audio lasts 0.000 s")
    assert not (tmp_path / "run" / "last").exists()


def test_a_split_of_subjects_this_copy_lacks_is_shown_and_not_scored(world, tmp_path, capsys):
    """BIWI with Test-A's subjects only: the preset's test_b names eight others. inspect stopped at it and training
    (test_split 'test' also matches test_b) refused to start; the split asked for still must be there."""
    data = _copy_data(world, tmp_path)
    _edit_manifest(data, lambda m: m["splits"].update(test_b={"subjects": ["F1", "F5"], "sentences": [2]}))
    code, out, err = run_cli(["inspect", data], capsys)
    assert code == 0, err
    assert "test_b" in out and "0 (names subject(s) the dataset does not have: F1, F5)" in out
    code, out, err = run_cli(_train(world, data, tmp_path), capsys)
    assert code == 0, err[-800:]
    assert "note: split 'test_b' is not scored: names subject(s) the dataset does not have: F1, F5" in err
    _edit_manifest(data, lambda m: m["splits"].update(test={"subjects": ["F1"]}))
    assert_clear_error(_train(world, data, tmp_path, "optim.epochs=1") + ["--overwrite"], capsys, "split 'test'", "F1")


def test_a_dataset_wav_cut_short_is_warned_of_when_the_dataset_opens(world, tmp_path, capsys):
    """A wav copied incompletely (its header promising more) was read as far as it went and scored against
    silence; only `inspect FILE` said so."""
    data = _copy_data(world, tmp_path)
    _edit_manifest(data, lambda m: m.update(duration_tolerance=1.0))  # as the presets allow
    wav = data / "wav" / "s01_sentence01.wav"
    wav.write_bytes(wav.read_bytes()[: int(wav.stat().st_size * 0.8)])
    code, out, err = run_cli(["inspect", data], capsys)
    assert code == 0, err
    assert "1 wav file(s) hold less audio than their headers promise (e.g. s01_sentence01.wav: 1.2" in err
    assert "of 1.60 s)" in err


# ----------------------------------------------------------------------------- bug 2: motion file missing
def test_a_motion_file_missing_beside_its_wav_is_an_error(world, tmp_path, capsys):
    """Our own format: a sequence whose wav is there but not its motion is not silently dropped."""
    data = _copy_data(world, tmp_path)
    (data / "vertices_npy" / "s01_sentence02.npy").unlink()
    assert_clear_error(["evaluate", "--data", data, "--pred", world["pred"]], capsys, "s01_sentence02.npy", "missing")
    assert_clear_error(["inspect", data], capsys, "s01_sentence02.npy", "missing")
    assert_clear_error(_train(world, data, tmp_path), capsys, "s01_sentence02.npy", "missing")


def test_processed_layout_notes_the_wav_files_it_skips(world, tmp_path, capsys):
    """The FaceFormer/CodeTalker layout discovers sequences by their motion files (BIWI ships wav files without
    motion): a note says how many wav files were skipped, with one example."""
    data = _copy_data(world, tmp_path)
    _edit_manifest(data, lambda m: m.update(layout="processed"))
    (data / "vertices_npy" / "s01_sentence02.npy").unlink()
    code, out, err = run_cli(["inspect", "--json", data], capsys)
    assert code == 0, err[-800:]
    assert json.loads(out)[0]["sequences"] == 3
    notes = [line for line in err.splitlines() if line.strip()]
    assert len(notes) == 1 and "note:" in notes[0] and "1 wav file" in notes[0] and "s01_sentence02.wav" in notes[0], err


# ------------------------------------------------------------------------------ bug 3: prediction length
def test_a_prediction_of_the_wrong_length_names_its_file(world, tmp_path, capsys):
    """Twice the frames is an error naming the prediction file; a frame or two off (fps rounding) is still scored."""
    pred = Path(shutil.copytree(world["pred"], tmp_path / "pred"))
    a = np.load(pred / "s01_sentence02.npy")
    np.save(pred / "s01_sentence02.npy", np.concatenate([a, a]))
    assert_clear_error(["evaluate", "--data", world["data"], "--pred", pred], capsys,
                       "s01_sentence02.npy", f"{2 * len(a)} frames", f"{len(a)}")
    np.save(pred / "s01_sentence02.npy", np.concatenate([a, a[-2:]]))
    code, out, err = run_cli(["evaluate", "--data", world["data"], "--pred", pred], capsys)
    assert code == 0, err[-800:]


# --------------------------------------------------------------------------------- bug 4: bad score files
def _set_lve(d, name):
    d["models"][name]["overall"]["lve"] = "abc"


def _drop_overall(d, name):
    del d["models"][name]["overall"]


def _model_as_list(d, name):
    d["models"][name] = [1, 2, 3]


def _units_as_string(d, name):
    d["units"] = "m"


def _per_vertex_strings(d, name):
    d["models"][name]["per_vertex_sq_error"] = ["x"] * 3


BAD_SCORES = {
    "overall lve not a number": (_set_lve, ["models.perfect.overall.lve", "abc"]),
    "overall removed": (_drop_overall, ["models.perfect", "overall"]),
    "model entry a list": (_model_as_list, ["models.perfect", "list"]),
    "units a string": (_units_as_string, ["units", '"m"']),
    "per-vertex errors not numbers": (_per_vertex_strings, ["models.perfect.per_vertex_sq_error"]),
}


@pytest.mark.parametrize("row", list(BAD_SCORES))
def test_report_refuses_a_damaged_score_file(row, world, tmp_path, capsys):
    edit, names = BAD_SCORES[row]
    data = json.loads(world["scores"].read_text())
    edit(data, "perfect")
    scores = tmp_path / "edited_scores.json"
    scores.write_text(json.dumps(data))
    out = tmp_path / "report"
    assert_clear_error(["report", scores, "--data", world["data"], "--out", out], capsys, "edited_scores.json", *names)
    assert not out.exists()


# ------------------------------------------------------------------------- bug 5: scores of another mesh
def test_report_notes_a_heatmap_left_out_for_scores_of_another_mesh(world, tmp_path, capsys):
    data = json.loads(world["scores"].read_text())
    data["models"]["perfect"]["per_vertex_sq_error"] = [0.0] * 50  # scored on a 50-vertex face
    scores = tmp_path / "other_scores.json"
    scores.write_text(json.dumps(data))
    out = tmp_path / "report"
    code, _, err = run_cli(["report", scores, "--data", world["data"], "--out", out], capsys)
    assert code == 0, err[-800:]
    assert (out / "metrics_test.png").is_file() and not (out / "heatmap_test.png").exists()
    notes = [line for line in err.splitlines() if line.strip()]
    assert len(notes) == 1, err
    for name in ("note:", "other_scores.json", "perfect", "50 vertices", "81 vertices", "heatmap_test.png"):
        assert name in notes[0], f"{name!r} not in: {notes[0]}"


def test_predictions_in_other_units_or_twice_over_are_refused(tmp_path, capsys):
    """Millimetres scored against metres, or two files predicting one sequence: one error, not a number."""
    import numpy as np

    from mmtalker.cli import main
    from mmtalker.data.dataset import open_dataset

    data = write_fake_dataset(tmp_path / "data")
    seqs = open_dataset(data).sequences("test")
    mm = tmp_path / "mm"
    mm.mkdir()
    for seq in seqs:
        np.save(mm / f"{seq.key}.npy", seq.vertices() * 1000)
    assert main(["evaluate", "--data", str(data), "--pred", str(mm)]) == 1
    err = capsys.readouterr().err
    assert f"{mm / seqs[0].key}.npy: is 1e+03× the size of the truth's face" in err and "units" in err  # the file
    both = tmp_path / "both"
    both.mkdir()
    for seq in seqs:
        np.save(both / f"{seq.key}.npy", seq.vertices())
    np.save(both / f"{seqs[0].key}_condition_s01.npy", seqs[0].vertices())
    assert main(["evaluate", "--data", str(data), "--pred", str(both)]) == 1
    err = capsys.readouterr().err
    assert f"holds more than one prediction of {seqs[0].key} ({seqs[0].key}.npy, 1 {seqs[0].key}_condition_*.npy)" in err


def test_a_text_file_named_npy_is_said_to_be_no_numpy_file(tmp_path, capsys):
    """numpy calls any non-numpy bytes "pickled data ... allow_pickle=False": the error says what the file is not."""
    text = tmp_path / "anim.npy"
    text.write_text("0 1 2\n")
    assert main(["inspect", str(text)]) == 1
    err = capsys.readouterr().err
    assert "anim.npy: not a readable numpy file (it starts with neither the .npy header" in err and "pickle" not in err


def test_a_test_split_prefix_naming_no_split_is_refused_before_training(tmp_path, capsys):
    data = write_fake_dataset(tmp_path / "data")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"base": str(Path(__file__).resolve().parents[1] / "configs" / "voca_synth.yaml"),
                                      "model": {"audio_encoder": "logmel", "audio_finetune": 0}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--set", "data.test_split=nope"]) == 1
    assert "data.test_split: 'nope': no split of" in capsys.readouterr().err and not out.exists()
