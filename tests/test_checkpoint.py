"""Checkpoints: safetensors + JSON round trip, and clear refusals of foreign or damaged ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.errors import MMTalkerError
from mmtalker.train import checkpoint as ckpt
from test_model import C, small_model


def _outputs(model):
    g = torch.Generator().manual_seed(7)
    audio = torch.randn(2, 6, C, generator=g)
    return model.predict_vertices(audio, torch.tensor([1, -1])).numpy()


def test_round_trip_restores_identical_outputs(tmp_path):
    model = small_model(seed=4)
    ckpt.save_checkpoint(tmp_path / "ck", model, extras={"epoch": 3, "dataset": {"fps": 25.0}})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded, config, extras = ckpt.load_checkpoint(tmp_path / "ck")
    assert config == model.config
    assert extras == {"epoch": 3, "dataset": {"fps": 25.0}}
    assert not loaded.training
    assert_close(_outputs(loaded), _outputs(model), atol=0, rtol=0, what="outputs after reload")
    assert float(loaded.motion_scale) == pytest.approx(0.01)
    # the weights file holds tensors only: no pickle opcodes, and safetensors' JSON header first
    raw = (tmp_path / "ck" / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"]["format"] == ckpt.FORMAT


def test_corner_uvs_travel_with_the_checkpoint_and_older_checkpoints_get_the_seamless_ones(tmp_path):
    from safetensors.torch import load_file, save_file

    model = small_model(seed=4)
    assert torch.equal(model.corner_uv, model.vertex_uv[model.faces])  # the default: a map without seams
    model.corner_uv += 0.25  # as a seamed map's charts would differ from the one UV kept per vertex
    ckpt.save_checkpoint(tmp_path / "ck", model)
    assert torch.equal(ckpt.load_checkpoint(tmp_path / "ck")[0].corner_uv, model.corner_uv)
    # a checkpoint written before corner_uv was kept
    weights = tmp_path / "ck" / "model.safetensors"
    state = load_file(weights)
    del state["corner_uv"]
    save_file(state, weights, metadata={"format": ckpt.FORMAT})
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta.pop("weights_sha256", None)
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    old = ckpt.load_checkpoint(tmp_path / "ck")[0]
    assert torch.equal(old.corner_uv, old.vertex_uv[old.faces])
    assert_close(_outputs(old), _outputs(model), atol=0, rtol=0, what="outputs: corner UVs serve retargeting only")
    # a run resumed from such weights keeps the corner UVs its setup built from the dataset's map
    resumed = small_model(seed=4)
    resumed.corner_uv += 0.5
    kept = resumed.corner_uv.clone()
    resumed.load_state_dict(state)
    assert torch.equal(resumed.corner_uv, kept)


def test_weights_files_get_the_umask_permissions(tmp_path):
    """safetensors alone writes 0600 files: a checkpoint shared with a group must read like the run's other files."""
    import os
    import stat

    previous = os.umask(0o027)
    try:
        model = small_model(seed=4)
        ckpt.save_checkpoint(tmp_path / "ck", model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ckpt.save_training_state(tmp_path / "ck", {"model": opt}, {}, {"epoch": 1}, np.random.default_rng(0))
        ckpt.save_rank_rng(tmp_path / "ck", rank=1, epoch=1)
    finally:
        os.umask(previous)
    written = sorted((tmp_path / "ck").rglob("*.safetensors"))
    assert len(written) == 3
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path.name


def test_truncated_weights_are_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", small_model())
    path = tmp_path / "ck" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MMTalkerError, match="truncated"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_truncated_weights_without_checksum_are_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", small_model())
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    del meta["weights_sha256"]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    path = tmp_path / "ck" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MMTalkerError, match="cannot read the weights"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_weights_with_nan_are_refused_with_the_weight_named(tmp_path):
    model = small_model()
    name, param = next((n, p) for n, p in model.named_parameters() if p.numel() > 1)
    with torch.no_grad():
        param.view(-1)[1] = float("nan")  # a run that diverged
    ckpt.save_checkpoint(tmp_path / "ck", model)
    with pytest.raises(MMTalkerError, match=f"weight '{name}' has NaN or infinite values"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_other_model_class_or_format_is_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", small_model())
    cfg_path = tmp_path / "ck" / "config.json"
    meta = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**meta, "model_class": "FaceFormer"}))
    with pytest.raises(MMTalkerError, match="FaceFormer"):
        ckpt.load_checkpoint(tmp_path / "ck")
    cfg_path.write_text(json.dumps({"architectures": ["Wav2Vec2Model"]}))  # a Hugging Face config
    with pytest.raises(MMTalkerError, match="not an mmtalker checkpoint"):
        ckpt.load_checkpoint(tmp_path / "ck")
    cfg_path.write_text('{"format": "mmtalker-checkpoint", "vers')
    with pytest.raises(MMTalkerError, match="not valid JSON"):
        ckpt.load_checkpoint(tmp_path / "ck")
    with pytest.raises(MMTalkerError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "nothing")


def test_weights_of_a_different_model_are_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "a", small_model())
    ckpt.save_checkpoint(tmp_path / "b", small_model(d_model=24, heads=4))
    meta_b = json.loads((tmp_path / "b" / "config.json").read_text())
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    meta_a = json.loads((tmp_path / "a" / "config.json").read_text())
    meta_a["weights_sha256"] = meta_b["weights_sha256"]  # checksum matches: the shapes must still be refused
    (tmp_path / "a" / "config.json").write_text(json.dumps(meta_a))
    with pytest.raises(MMTalkerError, match="do not fit"):
        ckpt.load_checkpoint(tmp_path / "a")


def test_unknown_or_mistyped_config_keys_are_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", small_model())
    cfg_path = tmp_path / "ck" / "config.json"
    meta = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**meta, "model": {**meta["model"], "d_modell": 3}}))
    with pytest.raises(MMTalkerError, match="unknown setting"):
        ckpt.load_checkpoint(tmp_path / "ck")
    cfg_path.write_text(json.dumps({**meta, "model": {**meta["model"], "d_model": "big"}}))
    with pytest.raises(MMTalkerError, match="d_model"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_training_state_round_trip(tmp_path):
    model = small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 3, C), torch.tensor([0]), model.template[None], torch.tensor([0, 1]),
          torch.full((2, 3), 1 / 3), torch.rand(2, 2)).sum().backward()
    opt.step()
    rng = np.random.default_rng(5)
    rng.random()
    aux = torch.nn.Linear(2, 2)
    ckpt.save_training_state(tmp_path, {"model": opt}, {"aux": aux}, {"epoch": 2, "best": None}, rng)
    expected_draw = rng.random()
    torch_draw = torch.rand(3)

    model2 = small_model(seed=9)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=5.0)
    aux2 = torch.nn.Linear(2, 2)
    rng2 = np.random.default_rng(0)
    counters = ckpt.load_training_state(tmp_path, {"model": opt2}, {"aux": aux2}, rng2)
    assert counters == {"epoch": 2, "best": None}
    assert rng2.random() == expected_draw
    assert torch.equal(torch.rand(3), torch_draw)
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"])
    assert torch.equal(aux.weight, aux2.weight)
