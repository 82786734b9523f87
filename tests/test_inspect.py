"""``mmtalker inspect``: one record per path, as text or one JSON document; errors name the file."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf

from mmtalker.cli import main


def _json(capsys, *argv):
    code = main(["inspect", "--json", *map(str, argv)])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_fixture_files_json(capsys, fixtures_dir):
    paths = [
        fixtures_dir / "audio" / "codetalker_man_stereo_44k.wav",
        fixtures_dir / "meshes" / "flame_sample.ply",
        fixtures_dir / "meshes" / "flame_uv.obj",
        fixtures_dir / "regions" / "flame_masks.npz",
        fixtures_dir / "regions" / "vocaset_lve.txt",
    ]
    code, records, _ = _json(capsys, *paths)
    assert code == 0 and [r["path"] for r in records] == [str(p) for p in paths]
    audio, ply, obj, npz, txt = records
    assert audio["kind"] == "audio" and (audio["sample_rate"], audio["channels"], audio["subtype"]) == (44100, 2, "PCM_16")
    assert audio["duration_s"] == pytest.approx(sf.info(str(paths[0])).frames / 44100, abs=1e-5)
    assert (ply["vertices"], ply["faces"], ply["components"], ply["boundary_loops"], ply["has_uv"]) == (5023, 9976, 3, 2, False)
    assert (obj["has_uv"], obj["uv_count"], obj["vertices"]) == (True, 5118, 5023)
    assert len(ply["extent"]) == 3 and all(0.1 < e < 0.5 for e in ply["extent"])  # a head in metres
    assert npz["regions"]["lips"] == {"indices": 250, "duplicates": 4}
    assert npz["entries"]["lips"] == "array int64 (254,)"
    assert txt["kind"] == "regions" and txt["regions"]["vocaset_lve"] == {"indices": 428, "duplicates": 0}


def test_text_output(capsys, fixtures_dir):
    code = main(["inspect", str(fixtures_dir / "meshes" / "flame_sample.ply"), str(fixtures_dir / "regions" / "flame_masks.npz")])
    out = capsys.readouterr().out
    assert code == 0
    assert "flame_sample.ply  (mesh)" in out
    assert any(line.split() == ["components", "3"] for line in out.splitlines())
    assert any(line.split()[:2] == ["lips", "250"] and "4 duplicates removed" in line for line in out.splitlines())


def test_pickle_structure_and_regions(capsys, tmp_path):
    masks = {"lips": np.array([1, 2, 2, 5]), "eye_region": np.arange(10)}
    (tmp_path / "FLAME_masks.pkl").write_bytes(pickle.dumps(masks, protocol=2))
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps({"S1": np.zeros((4, 3), np.float32)}, protocol=2))
    code, (regions, templates), _ = _json(capsys, tmp_path / "FLAME_masks.pkl", tmp_path / "templates.pkl")
    assert code == 0
    assert regions["kind"] == "pickle" and regions["type"] == "dict of 2"
    assert regions["regions"]["lips"] == {"indices": 3, "duplicates": 1}
    assert templates["entries"] == {"S1": "array float32 (4, 3)"} and "regions" not in templates


def test_malicious_pickle_is_an_error_and_others_still_described(capsys, tmp_path, fixtures_dir):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    code, records, err = _json(capsys, evil, fixtures_dir / "regions" / "vocaset_fdd.txt", tmp_path / "missing.wav")
    assert code == 1
    assert records[0]["kind"] == "error" and "refusing to load evil.pkl" in records[0]["error"]
    assert records[1]["regions"]["vocaset_fdd"]["indices"] == 1501
    assert "no such file" in records[2]["error"]
    assert "evil.pkl" in err and not (tmp_path / "PWNED").exists()


def test_single_bad_path_exits_1_with_one_line(capsys, tmp_path):
    bad = tmp_path / "speech.wav"
    bad.write_text("not audio")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmtalker inspect: error:") and "speech.wav" in err[0]
    (tmp_path / "notes.xyz").write_text("?")
    assert main(["inspect", str(tmp_path / "notes.xyz")]) == 1
    assert "does not know" in capsys.readouterr().err


def test_help_describes_every_kind(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    out = capsys.readouterr().out
    for word in ("speech", "mesh", "regions", "pickle", "dataset", "--json", "--preset"):
        assert word in out


def _tiny_dataset(root):
    """A native-layout folder: 2 subjects x 2 sentences, 1 s each, motion stored at 60 fps, served at 30."""
    V = 4
    (root / "vertices_npy").mkdir(parents=True)
    (root / "wav").mkdir()
    rng = np.random.default_rng(0)
    for subject in ("S1", "S2"):
        for sentence in ("sentence01", "sentence02"):
            key = f"{subject}_{sentence}"
            np.save(root / "vertices_npy" / f"{key}.npy", rng.normal(size=(60, V * 3)).astype(np.float32))
            sf.write(root / "wav" / f"{key}.wav", np.zeros(16000, np.float32), 16000)
    np.savez(root / "templates.npz", S1=np.zeros((V, 3), np.float32), S2=np.ones((V, 3), np.float32))
    manifest = {
        "name": "tiny", "layout": "native", "fps": 30, "stored_fps": 60, "num_vertices": V,
        "templates": "templates.npz", "splits": {"test": {"subjects": ["S2"]}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_dataset_folder(capsys, tmp_path):
    pytest.importorskip("mmtalker.data.dataset", reason="mmtalker.data.dataset (engineer B) is not in this build yet")
    _tiny_dataset(tmp_path / "tiny")
    code, (record,), _ = _json(capsys, tmp_path / "tiny")
    assert code == 0 and record["kind"] == "dataset"
    assert (record["name"], record["layout"], record["fps"], record["num_vertices"]) == ("tiny", "native", 30, 4)
    assert record["subjects"] == 2 and record["subject_names"] == ["S1", "S2"]
    assert record["sequences"] == 4 and record["duration_s"] == pytest.approx(4.0)
    assert record["splits"] == {"test": 2}


def test_dataset_folder_with_a_split_file(capsys, tmp_path):
    pytest.importorskip("mmtalker.data.dataset", reason="mmtalker.data.dataset (engineer B) is not in this build yet")
    _tiny_dataset(tmp_path / "tiny")
    split_file = tmp_path / "splits.json"
    split_file.write_text(json.dumps({"train": {"subjects": ["S1"]}, "test": {"subjects": "*", "sentences": ["2"]}}))
    assert main(["inspect", "--json", "--splits", str(split_file), str(tmp_path / "tiny")]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["splits"] == {"train": 2, "test": 2}


def test_unknown_folder(capsys, tmp_path):
    pytest.importorskip("mmtalker.data.dataset", reason="mmtalker.data.dataset (engineer B) is not in this build yet")
    assert main(["inspect", str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_checkpoint_folder_is_described_without_loading_weights(capsys, tmp_path):
    """A checkpoint folder: kind, encoder spec, styles, dataset, epoch and validation scores in report units
    from config.json alone; a damaged config.json is one error naming it."""
    ckpt = tmp_path / "best"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"\0" * 2**20)  # only sized: inspect does not load weights
    config = {"format": "mmtalker-checkpoint", "version": 1, "model_class": "VOCA", "weights_sha256": "0" * 64,
              "model": {"subjects": ["a", "b"], "audio_encoder": "whisper-tiny.en@3", "fps": 30.0},
              "extras": {"dataset": {"name": "synth-default", "num_vertices": 4998, "fps": 30.0,
                                     "units": {"length": "m", "report_scale": 100000.0}},
                         "epoch": 12, "step": 288, "metrics": {"lve": 1.25e-05, "eve": 3e-06, "mve": 0.0005}}}
    (ckpt / "config.json").write_text(json.dumps(config))
    code, (record,), _ = _json(capsys, ckpt)
    assert code == 0 and record["kind"] == "checkpoint" and record["model"] == "VOCA"
    assert (record["audio_encoder"], record["styles"], record["style_names"]) == ("whisper-tiny.en@3", 2, ["a", "b"])
    assert (record["dataset"], record["num_vertices"], record["epoch"], record["weights_mb"]) == ("synth-default", 4998, 12, 1.0)
    assert record["validation"] == {"lve": 1.25, "eve": 0.3, "mve": 0.0005}
    assert "split_file" not in record  # trained on the dataset's own splits
    assert main(["inspect", str(ckpt)]) == 0 and "whisper-tiny.en@3" in capsys.readouterr().out
    config["extras"]["training"] = {"data": {"path": "data/x", "splits": "my_splits.json"}}
    (ckpt / "config.json").write_text(json.dumps(config))
    code, (record,), _ = _json(capsys, ckpt)
    assert record["split_file"] == "my_splits.json"
    (ckpt / "config.json").write_text("{not json")
    code, (bad, _), _ = _json(capsys, ckpt, tmp_path / "missing.wav")
    assert code == 1 and bad["kind"] == "error" and "not valid JSON" in bad["error"]


def test_glb_from_export(tmp_path, capsys):
    """The GLB `mmtalker export` writes: frames, rate, mesh and morph targets; a foreign file fails in one line."""
    from mmtalker.render.export import export_glb

    t, v = 12, np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    anim = v[None] + 0.01 * np.sin(np.arange(t))[:, None, None].astype(np.float32)
    glb = tmp_path / "a.glb"
    export_glb(glb, anim, np.array([[0, 1, 2], [2, 3, 4]]), fps=25.0)
    code, [record], _ = _json(capsys, glb)
    assert code == 0 and record["kind"] == "animation (glTF binary)"
    assert (record["frames"], record["vertices"], record["faces"], record["fps"]) == (12, 5, 2, 25.0)
    assert record["duration_s"] == pytest.approx(12 / 25, abs=1e-3) and record["morph_targets"] >= 1  # as animate counts it
    (tmp_path / "junk.glb").write_bytes(b"glTF" + bytes(40))
    assert main(["inspect", str(tmp_path / "junk.glb")]) == 1
    assert "junk.glb: not a GLB animation" in capsys.readouterr().err


def test_an_unknown_option_shows_the_commands_own_usage(capsys, tmp_path):
    """`mmtalker data preview DIR --preset x` printed the top-level usage, which lists no option of preview."""
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "preview", str(tmp_path), "--preset", "vocaset"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: mmtalker data preview") and "unrecognized arguments: --preset vocaset" in err
