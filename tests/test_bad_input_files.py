"""Damaged checkpoints, animation files and run folders: each ends in one error naming the file at fault.

Checkpoints whose config.json holds a bad frame rate or entries of the wrong type, animation .npz files
storing a bad fps, an obj export over a longer one, and ``--resume`` of a run of another model kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtalker.cli import main
from mmtalker.errors import MMTalkerError
from mmtalker.models.registry import load_model
from mmtalker.models.voca import VOCA, VocaConfig
from mmtalker.train import checkpoint as ckpt
from test_model import small_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ------------------------------------------------------------------------------------------------ helpers
def _edit_config(folder: Path, edit) -> Path:
    """Apply ``edit`` to the dict in ``folder/config.json``; returns that file's path."""
    path = folder / ckpt.CONFIG
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return path


def _voca(folder: Path) -> Path:
    """A small VOCA checkpoint (5 vertices, two subjects) in ``folder``."""
    torch.manual_seed(0)
    model = VOCA(VocaConfig(subjects=["a", "b"]), torch.randn(5, 3), torch.randn(2, 5, 3), 0.01, torch.tensor([[0, 1, 2], [2, 3, 4]]))
    return ckpt.save_checkpoint(folder, model.eval())


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------- checkpoint frame rate
@pytest.mark.parametrize("fps", [0.0, -30.0, float("nan")])
def test_animate_refuses_a_checkpoint_with_a_bad_fps(tmp_path, fixtures_dir, capsys, fps):
    ck = ckpt.save_checkpoint(tmp_path / "ck", small_model())
    config = _edit_config(ck, lambda c: c["model"].update(fps=fps))
    code = main(["animate", "--checkpoint", str(ck), "--audio", str(fixtures_dir / "audio" / "faceformer_test_44k.wav"),
                 "--out", str(tmp_path / "a.npz")])
    err = _error(capsys)
    assert code == 1 and str(config) in err and f"setting 'fps' must be a positive frame rate, got {fps!r}" in err
    assert not (tmp_path / "a.npz").exists()


def test_a_peer_checkpoint_with_an_infinite_fps_is_refused(tmp_path):
    config = _edit_config(_voca(tmp_path / "voca"), lambda c: c["model"].update(fps=float("inf")))
    with pytest.raises(MMTalkerError, match="setting 'fps' must be a positive frame rate, got inf") as info:
        load_model(tmp_path / "voca")
    assert info.value.what.startswith(str(config))


def test_inspect_refuses_a_checkpoint_with_a_bad_fps(tmp_path, capsys):
    ck = ckpt.save_checkpoint(tmp_path / "ck", small_model())
    config = _edit_config(ck, lambda c: c["model"].update(fps=0))
    assert main(["inspect", str(ck)]) == 1
    err = _error(capsys)
    assert str(config) in err and "got 0" in err


# ---------------------------------------------------------------------------- checkpoint entries' types
@pytest.mark.parametrize("entry, edit", [
    ("model", lambda c: c.update(model=[1, 2])),
    ("extras", lambda c: c.update(extras="epoch 3")),
    ("extras.dataset", lambda c: c["extras"].update(dataset=[1])),
    ("extras.training.data", lambda c: c["extras"].update(training={"data": "x"})),
    ("extras.metrics", lambda c: c["extras"].update(metrics=[0.1])),
])
def test_inspect_names_an_entry_of_the_wrong_type(tmp_path, capsys, entry, edit):
    ck = ckpt.save_checkpoint(tmp_path / "ck", small_model(), extras={"dataset": {"fps": 30.0}})
    config = _edit_config(ck, edit)
    assert main(["inspect", str(ck)]) == 1
    err = _error(capsys)
    assert f"{config}: entry '{entry}' must be a mapping" in err


@pytest.mark.parametrize("entry, edit", [
    ("model.subjects", lambda c: c["model"].update(subjects="abc")),
    ("extras.dataset.units.report_scale", lambda c: c["extras"]["dataset"].update(units={"report_scale": "x"})),
])
def test_inspect_names_a_shown_setting_of_the_wrong_type(tmp_path, capsys, entry, edit):
    ck = ckpt.save_checkpoint(tmp_path / "ck", small_model(), extras={"dataset": {"fps": 30.0}, "metrics": {"lve": 1.0}})
    config = _edit_config(ck, edit)
    assert main(["inspect", str(ck)]) == 1
    assert f"{config}: entry '{entry}' must be" in _error(capsys)


def test_a_size_mismatch_names_the_entries(tmp_path):
    ck = ckpt.save_checkpoint(tmp_path / "ck", small_model())
    _edit_config(ck, lambda c: c["model"].update(regressor_hidden=8))  # the weights hold 16 rows
    with pytest.raises(MMTalkerError) as info:
        ckpt.load_checkpoint(ck)
    message = info.value.message
    assert message.startswith(f"{ck}: weights do not fit the model described by config.json (size mismatch for regressor.")
    assert "[16, " in message and "[8, " in message and message.endswith(")")


# ------------------------------------------------------------------------------- animation files' frame rate
def _animation(path: Path, fps, frames: int = 5) -> Path:
    vertices = np.random.default_rng(0).normal(size=(frames, 4, 3)).astype(np.float32)
    np.savez(path, vertices=vertices, fps=fps, faces=np.array([[0, 1, 2], [0, 2, 3]], np.int32))
    return path


BAD_FPS = [np.float32("nan"), np.float32(0), np.float32(-30), np.array([30.0, 30.0])]


@pytest.mark.parametrize("fps", BAD_FPS, ids=["nan", "zero", "negative", "two"])
@pytest.mark.parametrize("fmt", ["npz", "glb"])
def test_export_refuses_a_bad_stored_fps(tmp_path, capsys, fps, fmt):
    anim = _animation(tmp_path / "anim.npz", fps)
    out = tmp_path / f"out.{fmt}"
    assert main(["export", str(anim), "--format", fmt, "--out", str(out)]) == 1
    err = _error(capsys)
    assert f"{anim}: stores fps " in err and "pass --fps to override it" in err and not out.exists()


@pytest.mark.parametrize("fps", BAD_FPS[:3], ids=["nan", "zero", "negative"])
def test_export_with_fps_given_replaces_a_bad_stored_fps(tmp_path, capsys, fps):
    """The refusal's hint holds: --fps makes the file's own frame rate, even a damaged one, no matter."""
    anim = _animation(tmp_path / "anim.npz", fps)
    assert main(["export", str(anim), "--format", "npz", "--out", str(tmp_path / "out.npz")]) == 1
    assert f"{anim}: stores fps " in _error(capsys) and not (tmp_path / "out.npz").exists()
    assert main(["export", str(anim), "--format", "npz", "--out", str(tmp_path / "out.npz"), "--fps", "25"]) == 0
    with np.load(tmp_path / "out.npz") as data:
        assert float(data["fps"]) == 25.0


def test_render_refuses_a_nan_stored_fps(tmp_path, capsys):
    anim = _animation(tmp_path / "anim.npz", np.float32("nan"))
    assert main(["render", str(anim), "--out", str(tmp_path / "talk.mp4"), "--size", "32"]) == 1
    assert f"{anim}: stores fps nan" in _error(capsys)


# ------------------------------------------------------------------------------------ obj export --overwrite
def test_obj_export_overwrite_removes_the_longer_exports_frames(tmp_path, capsys):
    out = tmp_path / "objs"
    assert main(["export", str(_animation(tmp_path / "long.npz", 30.0, frames=12)), "--format", "obj", "--out", str(out)]) == 0
    others = ["notes.txt", "frame_1.obj", "frame_00003.obj.bak", "take_00004.obj"]  # not named like an export's frames
    for name in others:
        (out / name).write_text("keep")
    assert main(["export", str(tmp_path / "long.npz"), "--format", "obj", "--out", str(out)]) == 1
    assert f"{out}: exists and is not empty" in _error(capsys)
    assert main(["export", str(_animation(tmp_path / "short.npz", 30.0, frames=3)), "--format", "obj", "--out", str(out),
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["frame_00000.obj", "frame_00001.obj", "frame_00002.obj", *others])


def test_obj_export_into_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "objs"
    out.write_text("a file")
    assert main(["export", str(_animation(tmp_path / "a.npz", 30.0)), "--format", "obj", "--out", str(out), "--overwrite"]) == 1
    assert f"{out}: is a file, not a folder" in _error(capsys)  # the command checks before export_obj_sequence would


# ------------------------------------------------------------------------------ --resume of another model kind
def _fake_run(run: Path, model) -> Path:
    """A run folder as far as --resume first reads it: last/ with the model's checkpoint and a training state."""
    ckpt.save_checkpoint(run / "last", model)
    (run / "last" / ckpt.STATE_META).write_text("{}")
    (run / "training_config.json").write_text('{"kept": true}\n')
    return run


@pytest.mark.parametrize("config, held, trained", [
    ("voca_synth.yaml", "mmtalker", "voca"),
    ("mmtalker_synth.yaml", "voca", "mmtalker"),
    ("faceformer_synth.yaml", "voca", "faceformer"),
])
def test_resume_refuses_a_run_of_another_kind(tmp_path, capsys, config, held, trained):
    run = _fake_run(tmp_path / "run", small_model() if held == "mmtalker" else VOCA(
        VocaConfig(subjects=["a"]), torch.zeros(5, 3), None, 0.01, torch.tensor([[0, 1, 2]])))
    code = main(["train", "--config", str(CONFIGS / config), "--data", str(tmp_path / "no-data"), "--out", str(run), "--resume"])
    err = _error(capsys)
    assert code == 1
    assert f"{run}: holds a run of kind {held} (last/config.json), but the config trains {trained}" in err
    assert (run / "training_config.json").read_text() == '{"kept": true}\n'  # nothing written over


def test_an_interrupted_obj_export_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """Frames are written into a hidden folder beside --out and moved in at the end: Ctrl-C half-way used to
    leave a folder of some frames (the last one empty)."""
    import numpy as np

    from mmtalker.render import export

    verts = np.random.default_rng(0).normal(size=(6, 4, 3)).astype(np.float32)
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    out = tmp_path / "objs"
    export.export_obj_sequence(out, verts[:2], faces)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = []
    real_open = open

    def interrupting_open(path, *args, **kwargs):
        written.append(path)
        if len(written) == 4:
            raise KeyboardInterrupt
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", interrupting_open)
    with pytest.raises(KeyboardInterrupt):
        export.export_obj_sequence(out, verts, faces, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objs"]  # no staging folder left behind
