"""MMTalker network: shapes, masking, the factorised regressor, training vs inference paths."""

from __future__ import annotations

import numpy as np
import pytest

from mmtalker.errors import MMTalkerError
import torch

from conftest import assert_close
from fake_talk import grid_mesh
from mmtalker.mesh.uv import parameterize
from mmtalker.models.blocks import FourierFeatures, UVFeatureGrid
from mmtalker.models.mmtalker import UNSEEN_SUBJECT, DisplacementRegressor, MMTalker, MMTalkerConfig, vertex_normals

C = 12  # audio feature width of the fake encoder


def small_model(seed=0, **overrides) -> MMTalker:
    torch.manual_seed(seed)
    mesh = grid_mesh(6)
    uvmap = parameterize(mesh)
    sizes = dict(d_model=16, gcn_layers=2, num_region_tokens=4, heads=2, audio_layers=2, fourier_frequencies=3,
                 regressor_hidden=16, regressor_layers=[8])
    config = MMTalkerConfig(subjects=["a", "b"], audio_dim=C, **{**sizes, **overrides})
    templates = np.stack([mesh.vertices, mesh.vertices * 1.1])
    model = MMTalker(config, uvmap.faces, uvmap.vertex_uv, mesh.vertices, templates, motion_scale=0.01)
    for p in model.regressor.out.parameters():  # the zero init would make every output 0
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def random_points(model, P=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    F = model.faces.shape[0]
    face_idx = torch.randint(0, F, (P,), generator=g)
    bary = torch.rand(P, 3, generator=g)
    bary = bary / bary.sum(1, keepdim=True)
    uv = (model.vertex_uv[model.faces[face_idx]] * bary[..., None]).sum(1)
    return face_idx, bary, uv


@pytest.mark.parametrize("T", [1, 7])
def test_shapes(T):
    model = small_model()
    B, V = 2, model.num_vertices
    audio = torch.randn(B, T, C)
    subject = torch.tensor([0, UNSEEN_SUBJECT])
    face_idx, bary, uv = random_points(model)
    out = model(audio, subject, model.templates_for(subject), face_idx, bary, uv)
    assert out.shape == (B, T, 10, 3)
    verts = model.predict_vertices(audio, subject, chunk_frames=3)
    assert verts.shape == (B, T, V, 3)
    assert torch.isfinite(verts).all()


def test_padding_does_not_change_real_frames():
    """A clip padded into a ragged batch gives the same output on its real frames as alone."""
    model = small_model()
    short, long = torch.randn(1, 4, C), torch.randn(1, 9, C)
    batch = torch.zeros(2, 9, C)
    batch[0, :4], batch[1] = short[0], long[0]
    mask = torch.arange(9)[None] < torch.tensor([[4], [9]])
    subject = torch.tensor([1, 0])
    together = model.predict_vertices(batch, subject, mask=mask)
    alone = model.predict_vertices(short, subject[:1])
    assert_close(together[0, :4].numpy(), alone[0].numpy(), atol=1e-6, what="padded clip")
    assert_close(together[1].numpy(), model.predict_vertices(long, subject[1:])[0].numpy(), atol=1e-6, what="full clip")


def test_factorised_regressor_equals_concat_mlp():
    torch.manual_seed(3)
    reg = DisplacementRegressor(point_dim=5, frame_dim=4, hidden=6, layers=[7, 3])
    torch.nn.init.normal_(reg.out.weight)
    naive_first = torch.nn.Linear(9, 6)
    with torch.no_grad():
        naive_first.weight.copy_(torch.cat([reg.point_in.weight, reg.frame_in.weight], 1))
        naive_first.bias.copy_(reg.point_in.bias)
    p, z = torch.randn(2, 5, 5), torch.randn(2, 3, 4)
    got = reg(reg.point_part(p), reg.frame_part(z))  # (B, T, P, 3)
    for b in range(2):
        for t in range(3):
            for i in range(5):
                h = torch.nn.functional.gelu(naive_first(torch.cat([p[b, i], z[b, t]])))
                for layer in reg.hidden:
                    h = torch.nn.functional.gelu(layer(h))
                assert_close(got[b, t, i].detach().numpy(), reg.out(h).detach().numpy(), atol=1e-5, what=f"b{b} t{t} p{i}")


def test_inference_at_vertices_equals_training_path_at_vertex_points():
    """Querying UV points placed exactly on vertices gives what predict_vertices gives (times motion_scale)."""
    model = small_model()
    verts = torch.tensor([0, 5, 17, model.num_vertices - 1])
    face_idx, corner = [], []
    for v in verts.tolist():
        f = int(torch.nonzero((model.faces == v).any(1))[0])
        face_idx.append(f)
        corner.append(int(torch.nonzero(model.faces[f] == v)[0]))
    bary = torch.nn.functional.one_hot(torch.tensor(corner), 3).float()
    uv = model.vertex_uv[verts]
    audio, subject = torch.randn(1, 5, C), torch.tensor([1])
    with torch.no_grad():
        at_points = model(audio, subject, model.templates_for(subject), torch.tensor(face_idx), bary, uv)
    dense = model.predict_vertices(audio, subject)
    assert_close((at_points * model.motion_scale).numpy(), dense[:, :, verts].numpy(), atol=1e-6, what="vertex queries")


def test_uv_feature_grid_hand_case():
    """Bilinear reads of a 4 x 4 map holding 4·row + col (row from v, column from u), at corners, a third
    of the way along an edge and the centre; one block of channels per resolution."""
    grid = UVFeatureGrid([4, 2], channels=2)
    with torch.no_grad():
        grid.maps[0][0, 1] = torch.arange(16.0).view(4, 4)
        grid.maps[1][0, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    u = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1 / 3, 0.0], [0.5, 0.5]])
    out = grid(u)
    assert out.shape == (5, 4) and grid.out_dim == 4
    assert_close(out[:, 1].detach().numpy(), np.array([0.0, 3.0, 12.0, 1.0, 7.5]), atol=1e-5, what="4x4 map")
    assert_close(out[:, 2].detach().numpy(), np.array([0.0, 1.0, 2.0, 1 / 3, 1.5]), atol=1e-5, what="2x2 map")
    assert_close(out[:, [0, 3]].detach().numpy(), np.zeros((5, 2)), what="untouched channels")


def test_uv_grid_model_trains_its_maps_and_keeps_vertex_queries_exact():
    """With ``uv_grid`` the maps get gradients from the training path, and vertex queries still equal
    predict_vertices (both read the maps at the same UVs)."""
    model = small_model(uv_grid=[4, 8], uv_grid_channels=3)
    with torch.no_grad():
        for m in model.uv_grid.maps:
            m.normal_()
    face_idx, bary, uv = random_points(model)
    audio, subject = torch.randn(1, 5, C), torch.tensor([0])
    model.train()
    model(audio, subject, model.templates_for(subject), face_idx, bary, uv).square().sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in model.uv_grid.maps)
    model.eval()
    verts = torch.tensor([0, 7, model.num_vertices - 1])
    f = [int(torch.nonzero((model.faces == v).any(1))[0]) for v in verts.tolist()]
    corner = [int(torch.nonzero(model.faces[fi] == v)[0]) for fi, v in zip(f, verts.tolist())]
    with torch.no_grad():
        at_points = model(audio, subject, model.templates_for(subject), torch.tensor(f),
                          torch.nn.functional.one_hot(torch.tensor(corner), 3).float(), model.vertex_uv[verts])
    dense = model.predict_vertices(audio, subject)
    assert_close((at_points * model.motion_scale).numpy(), dense[:, :, verts].numpy(), atol=1e-6, what="grid vertex queries")


def test_unseen_subject_uses_mean_style_and_neutral_template():
    model = small_model()
    style = model.audio.style_vectors(torch.tensor([0, 1, UNSEEN_SUBJECT]))
    assert_close(style[2].detach().numpy(), style[:2].mean(0).detach().numpy(), atol=1e-7, what="mean style")
    templates = model.templates_for(torch.tensor([1, UNSEEN_SUBJECT]))
    assert_close(templates[0].numpy(), model.subject_templates[1].numpy(), what="subject template")
    assert_close(templates[1].numpy(), model.template.numpy(), what="neutral template")
    assert model.subject_index("b") == 1 and model.subject_index("nobody") == UNSEEN_SUBJECT


def test_style_changes_the_output():
    model = small_model()
    audio = torch.randn(1, 4, C)
    t = model.template[None]
    a = model.predict_vertices(audio, torch.tensor([0]), t)
    b = model.predict_vertices(audio, torch.tensor([1]), t)
    assert (a - b).abs().max() > 1e-6


def test_vertex_normals_against_loop():
    mesh = grid_mesh(4)
    v, f = torch.from_numpy(mesh.vertices).double(), torch.from_numpy(mesh.faces)
    expected = torch.zeros_like(v)
    for tri in f.tolist():
        a, b, c = v[tri]
        n = torch.cross(b - a, c - a, dim=0)
        for i in tri:
            expected[i] += n
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert_close(vertex_normals(v, f).numpy(), expected.numpy(), atol=1e-12, what="normals")


def test_fourier_features_hand_case():
    ff = FourierFeatures(2)
    u = torch.tensor([[0.25, 0.5]])
    expected = [0.25, 0.5, np.sin(np.pi / 4), np.sin(np.pi / 2), np.sin(np.pi / 2), np.sin(np.pi),
                np.cos(np.pi / 4), np.cos(np.pi / 2), np.cos(np.pi / 2), np.cos(np.pi)]
    assert ff.out_dim == 10
    assert_close(ff(u)[0].numpy(), np.array(expected), atol=1e-6, what="fourier")


def test_shared_templates_are_encoded_once_with_the_same_result():
    model = small_model()
    templates = model.subject_templates[torch.tensor([1, 0, 1])]
    g, tokens = model.encode_geometry(templates)
    for b in range(3):
        g1, t1 = model.geometry(templates[b : b + 1], model.faces, model.vertex_uv)
        assert_close(g[b].detach().numpy(), g1[0].detach().numpy(), atol=1e-5, what=f"G of item {b}")
        assert_close(tokens[b].detach().numpy(), t1[0].detach().numpy(), atol=1e-5, what=f"tokens of item {b}")


def test_utterance_dropout_switches_off_the_utterance_level_paths_in_training_only():
    """With every clip's utterance paths off, a frame hears only the temporal convolutions' reach
    (±6 frames for 2 layers of kernel 5): audio 30 frames away no longer changes it; in eval mode it does."""
    model = small_model(utterance_dropout=0.999, dropout=0.0)
    torch.manual_seed(0)
    audio = torch.randn(1, 40, C)
    far = audio.clone()
    far[:, 30:] = torch.randn(1, 10, C)  # (a constant shift would vanish in the input LayerNorm)
    t, s = model.template[None], torch.tensor([0])
    g, tokens = model.encode_geometry(t)
    model.train()
    torch.manual_seed(1)
    a = model.encode_motion(audio, s, tokens)[:, :5]
    torch.manual_seed(1)
    b = model.encode_motion(far, s, tokens)[:, :5]
    assert torch.allclose(a, b, atol=1e-6)
    model.eval()
    assert not torch.allclose(model.encode_motion(audio, s, tokens)[:, :5], model.encode_motion(far, s, tokens)[:, :5], atol=1e-4)


def test_feature_dropout_hides_the_speech_features_in_training_only():
    """With (almost) every feature channel dropped, training-mode motion no longer depends on the audio;
    in eval mode it does, and it is deterministic."""
    model = small_model(feature_dropout=0.999, dropout=0.0)
    s = torch.tensor([0])
    tokens = model.encode_geometry(model.template[None])[1]
    audio, other = torch.randn(1, 6, C), torch.randn(1, 6, C)
    model.train()
    torch.manual_seed(5)
    a = model.encode_motion(audio, s, tokens)
    torch.manual_seed(5)
    b = model.encode_motion(other, s, tokens)
    assert torch.allclose(a, b, atol=1e-6)
    model.eval()
    assert torch.equal(model.encode_motion(audio, s, tokens), model.encode_motion(audio, s, tokens))
    assert not torch.allclose(model.encode_motion(audio, s, tokens), model.encode_motion(other, s, tokens), atol=1e-4)


def test_model_config_ranges_are_checked():
    from mmtalker.train.config import build_dataclass

    with pytest.raises(MMTalkerError, match="utterance_dropout"):
        build_dataclass(MMTalkerConfig, {"utterance_dropout": 1.5}, "cfg.yaml")
    with pytest.raises(MMTalkerError, match="feature_dropout"):
        build_dataclass(MMTalkerConfig, {"feature_dropout": 1.0}, "cfg.yaml")
    with pytest.raises(MMTalkerError, match="uv_grid"):
        build_dataclass(MMTalkerConfig, {"uv_grid": [32, 1]}, "cfg.yaml")
    with pytest.raises(MMTalkerError, match="uv_grid_channels"):
        build_dataclass(MMTalkerConfig, {"uv_grid": [8], "uv_grid_channels": 0}, "cfg.yaml")


def test_style_dropout_animates_training_clips_in_the_mean_style():
    model = small_model(style_dropout=0.999, dropout=0.0)
    audio = torch.randn(1, 12, C)
    g, tokens = model.encode_geometry(model.template[None])
    model.train()
    torch.manual_seed(3)
    dropped = model.encode_motion(audio, torch.tensor([1]), tokens)
    model.eval()
    assert torch.allclose(dropped, model.encode_motion(audio, torch.tensor([UNSEEN_SUBJECT]), tokens), atol=1e-6)
    assert not torch.allclose(dropped, model.encode_motion(audio, torch.tensor([1]), tokens), atol=1e-4)


def test_template_jitter_scales_templates_in_training_only():
    model = small_model(template_jitter=0.1)
    t = model.template[None]
    model.eval()
    g0, _ = model.encode_geometry(t)
    assert torch.equal(g0, model.encode_geometry(t)[0])  # eval: the template as given
    model.train()
    torch.manual_seed(0)
    g1, _ = model.encode_geometry(torch.cat([t, t]))
    assert torch.equal(g1[0], g1[1])  # one draw per distinct template: a subject's clips share it
    assert not torch.allclose(g1[0], g0, atol=1e-5)
