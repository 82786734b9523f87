"""MMTalker's eye pathway: the eye region animated from a local speech stream, blended in by a softened mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_close
from fake_talk import grid_mesh
from mmtalker.audio.encoders import StackedLayers, feature_name, model_audio_encoder
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError
from mmtalker.inference.api import MMTalker as Talker
from mmtalker.inference.random_model import build_random_model
from mmtalker.mesh.uv import parameterize
from mmtalker.models.mmtalker import MMTalker, MMTalkerConfig

C = 12  # width of one feature stream
N = 9  # grid mesh: N × N vertices
SIZES = dict(d_model=16, gcn_layers=2, num_region_tokens=4, heads=2, audio_layers=2, fourier_frequencies=3,
             regressor_hidden=16, regressor_layers=[8])
EYE = [i * N + j for i in range(1, 6) for j in range(1, 6)]  # a 5 × 5 patch of the grid


def eye_model(seed=0, smoothing=1, **overrides) -> MMTalker:
    torch.manual_seed(seed)
    mesh = grid_mesh(N)
    uvmap = parameterize(mesh)
    config = MMTalkerConfig(subjects=["a", "b"], audio_dim=C, eye_pathway=True, eye_past=3, eye_future=1,
                            eye_edge_smoothing=smoothing, **{**SIZES, **overrides})
    model = MMTalker(config, uvmap.faces, uvmap.vertex_uv, mesh.vertices, np.stack([mesh.vertices, mesh.vertices * 1.1]), 0.01)
    for head in (model.regressor.out, model.eye_frame_in):  # the zero inits would make every output 0
        for p in head.parameters():
            torch.nn.init.normal_(p, std=0.5)
    model.set_eye_region(EYE)
    return model.eval()


def test_mask_is_the_region_softened_at_its_edge():
    model = eye_model(smoothing=0)
    w = model.eye_weight.numpy()
    assert set(np.flatnonzero(w == 1)) == set(EYE) and set(np.unique(w)) == {0.0, 1.0}
    w = eye_model(smoothing=2).eye_weight.numpy()
    assert ((w >= 0) & (w <= 1)).all()
    assert w[3 * N + 3] == pytest.approx(1.0)  # the patch's centre: every vertex within 2 rings is in the region
    assert w[1 * N + 1] < 1  # its corner: neighbours outside pull it down
    assert 0 < w[3 * N + 7] < w[3 * N + 6] < w[3 * N + 5] < 1  # one and two rings outside: reached by two rounds
    assert w[3 * N + 8] == 0 and w[8 * N + 8] == 0  # three rings out, and far away


def test_bad_region_is_refused():
    model = eye_model()
    with pytest.raises(MMTalkerError, match="eye region.*must name vertices"):
        model.set_eye_region([0, N * N])
    with pytest.raises(MMTalkerError, match="must name vertices"):
        model.set_eye_region([])


def test_each_stream_moves_only_its_own_part_of_the_face():
    model = eye_model()
    T, subject = 9, torch.tensor([0])
    feats = torch.randn(1, T, 2 * C)
    base = model.predict_vertices(feats, subject)[0]
    w = model.eye_weight
    other_main, other_eye = feats.clone(), feats.clone()
    other_main[..., :C] = torch.randn(1, T, C)
    other_eye[..., C:] = torch.randn(1, T, C)
    main_moved = (model.predict_vertices(other_main, subject)[0] - base).abs().amax(dim=(0, 2))  # (V,)
    eye_moved = (model.predict_vertices(other_eye, subject)[0] - base).abs().amax(dim=(0, 2))
    assert main_moved[w == 1].max() < 1e-7 and main_moved[w == 0].min() > 0
    assert eye_moved[w == 0].max() < 1e-7 and eye_moved[w == 1].min() > 0


def test_eye_pathway_sees_only_its_window():
    model = eye_model()  # eye_past 3, eye_future 1
    T, t0, subject = 16, 8, torch.tensor([1])
    feats = torch.randn(1, T, 2 * C)
    other = feats.clone()
    other[0, t0, C:] = torch.randn(C)  # (a constant shift would vanish in the input LayerNorm)
    eye = model.eye_weight == 1
    changed = (model.predict_vertices(other, subject)[0] - model.predict_vertices(feats, subject)[0])[:, eye].abs().amax(dim=(1, 2))
    assert torch.nonzero(changed > 1e-7).flatten().tolist() == list(range(t0 - 1, t0 + 4))  # frames t0 − future … t0 + past


def test_training_path_at_vertex_points_equals_inference():
    model = eye_model(seed=2)
    faces, V = model.faces, model.num_vertices
    face_idx = torch.tensor([int(torch.nonzero(faces == v)[0, 0]) for v in range(V)])
    bary = (faces[face_idx] == torch.arange(V)[:, None]).float()
    uv = model.vertex_uv
    feats, subject = torch.randn(2, 6, 2 * C), torch.tensor([0, 1])
    trained = model(feats, subject, model.templates_for(subject), face_idx, bary, uv) * model.motion_scale
    assert_close(trained.detach().numpy(), model.predict_vertices(feats, subject).numpy(), atol=1e-6, what="eye model")


def test_features_of_the_wrong_width_are_refused():
    with pytest.raises(MMTalkerError, match="2 12-wide streams"):
        eye_model().predict_vertices(torch.randn(1, 5, C), torch.tensor([0]))


def test_model_config_eye_settings_are_checked():
    from mmtalker.train.config import build_dataclass

    with pytest.raises(MMTalkerError, match="eye_past"):
        build_dataclass(MMTalkerConfig, {"eye_past": -1}, "cfg")
    assert MMTalkerConfig(eye_pathway=True, eye_layer=2).extra_encoder_layers() == [2]
    assert MMTalkerConfig().extra_encoder_layers() == [] and MMTalkerConfig().feature_streams == 1


# ------------------------------------------------------------------------------------------- the features
def test_model_encoder_and_cache_name_follow_the_config():
    plain = MMTalkerConfig(audio_encoder="logmel")
    eyes = MMTalkerConfig(audio_encoder="logmel", eye_pathway=True)
    assert not isinstance(model_audio_encoder(plain), StackedLayers)
    enc = model_audio_encoder(eyes)
    assert isinstance(enc, StackedLayers) and enc.dim == 160
    assert feature_name(plain) == "logmel" and feature_name(eyes) != feature_name(plain)  # separate cache entries


def test_api_animates_an_eye_model_like_the_network(tmp_path):
    """From a checkpoint, through the inference engine (which decodes chunk by chunk), as predict_vertices."""
    from mmtalker.audio.encoders import features_at_fps
    from mmtalker.train.checkpoint import save_checkpoint

    config = MMTalkerConfig(subjects=["alice", "bob"], audio_encoder="logmel", audio_dim=80, fps=25.0, eye_pathway=True,
                            eye_past=4, eye_future=1, **SIZES)
    model = build_random_model(grid_mesh(8), config, seed=1)
    for p in model.eye_frame_in.parameters():
        torch.nn.init.normal_(p, std=0.5)
    model.set_eye_region(list(range(20, 30)))
    save_checkpoint(tmp_path / "ck", model)
    talker = Talker.from_pretrained(tmp_path / "ck")
    assert torch.equal(talker.model.eye_weight, model.eye_weight)
    rng = np.random.default_rng(0)
    audio = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 0.05) * rng.uniform(0, 1, SAMPLE_RATE)).astype(np.float32)
    got = talker.animate(audio, style="bob")
    enc = model_audio_encoder(config)
    with torch.no_grad():
        feats = features_at_fps(enc(torch.from_numpy(audio)[None]), enc.rate, config.fps, got.shape[0])
    want = model.predict_vertices(feats, torch.tensor([1]))[0].numpy() + model.templates_for(torch.tensor([1]))[0].numpy()
    assert_close(got, want, atol=1e-5, what="eye model through the API")


def test_training_with_the_eye_pathway_on_data_without_an_eye_region_stops_with_the_fix(tmp_path, capsys):
    import yaml

    from fake_talk import write_fake_dataset
    from mmtalker.cli import main

    data = write_fake_dataset(tmp_path / "data", clips_per_subject=2)
    config = tmp_path / "c.yaml"
    base = Path(__file__).resolve().parents[1] / "configs" / "mmtalker_synth.yaml"
    config.write_text(yaml.safe_dump({"base": str(base), "model": {"audio_encoder": "logmel", "audio_finetune": 0, "eye_pathway": True},
                                      "loss": {"eye_region": "no_such_region"}}))
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "no region 'no_such_region'" in err and "model.eye_pathway: false" in err and "Traceback" not in err


def test_a_retargeted_mesh_blends_the_eye_pathway_as_the_original_vertices_do():
    """On a subdivided template the original vertices keep their blend weight and move as in the plain animation."""
    import trimesh.remesh

    from mmtalker.mesh.io import Mesh

    config = MMTalkerConfig(subjects=["alice"], audio_encoder="logmel", audio_dim=80, fps=25.0, eye_pathway=True, **SIZES)
    model = build_random_model(grid_mesh(7), config, seed=4)
    for p in model.eye_frame_in.parameters():
        torch.nn.init.normal_(p, std=0.5)
    model.set_eye_region(list(range(8, 20)))
    talker = Talker.from_model(model)
    base = talker.template_mesh
    verts, faces = trimesh.remesh.subdivide(base.vertices, base.faces)
    audio = (0.3 * np.sin(np.arange(24000) * 0.03)).astype(np.float32)
    plain = talker.animate(audio)
    fine = talker.animate(audio, template=Mesh(verts.astype(np.float32), faces.astype(np.int64)))
    motion = np.abs(plain - base.vertices).max()
    assert motion > 0
    assert_close(fine[:, : base.num_vertices], plain, atol=1e-3 * motion, what="original vertices")


def test_own_style_keeps_the_eye_pathway_out_of_the_main_speaker_embedding():
    """With eye_own_style the main pathway's style vectors get no gradient from the eye region, and the eye
    pathway's own ones none from elsewhere; unseen speakers get the mean of the eye pathway's vectors."""
    model = eye_model(eye_own_style=True).train()
    model.config.dropout = 0.0
    feats, subject = torch.randn(1, 6, 2 * C), torch.tensor([1])
    V = model.num_vertices
    faces = model.faces
    face_idx = torch.tensor([int(torch.nonzero(faces == v)[0, 0]) for v in range(V)])
    bary = (faces[face_idx] == torch.arange(V)[:, None]).float()
    out = model(feats, subject, model.templates_for(subject), face_idx, bary, model.vertex_uv)
    eye_only = model.eye_weight == 1
    out[:, :, eye_only].square().sum().backward()
    assert model.audio.style.weight.grad is None or model.audio.style.weight.grad.abs().max() == 0
    assert model.eye_style.weight.grad[1].abs().max() > 0
    model.zero_grad()
    out = model(feats, subject, model.templates_for(subject), face_idx, bary, model.vertex_uv)
    out[:, :, model.eye_weight == 0].square().sum().backward()
    assert model.eye_style.weight.grad is None or model.eye_style.weight.grad.abs().max() == 0
    assert model.audio.style.weight.grad[1].abs().max() > 0
    model.eval()
    assert_close(model.eye_style_vectors(torch.tensor([-1]))[0].detach().numpy(),
                 model.eye_style.weight.mean(0).detach().numpy(), atol=1e-7, what="unseen speaker's eye style")


@pytest.mark.parametrize("fusion_layers", [1, 2])
@pytest.mark.parametrize("last", [1, 4, 20])
def test_last_frames_part_equals_the_whole_sequences_tail(fusion_layers, last):
    """Streaming computes the per-frame stages for the new frames only: the same values as the whole sequence's tail."""
    model = eye_model(fusion_layers=fusion_layers)
    audio = torch.randn(1, 20, 2 * C)
    subject = torch.tensor([1])
    with torch.no_grad():
        g, tokens = model.encode_geometry(model.templates_for(subject))
        whole = model.frame_part(audio, subject, tokens)
        tail = model.frame_part(audio, subject, tokens, last=last)
    assert tail.shape == (1, last, whole.shape[-1])
    assert_close(tail.numpy(), whole[:, -last:].numpy(), atol=1e-5, what=f"last {last} frames")
    with pytest.raises(MMTalkerError, match="last=21 for 20 frames"):
        model.frame_part(audio, subject, tokens, last=21)
