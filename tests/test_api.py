"""The Python API: MMTalker.from_pretrained(dir).animate(audio, style=, template=) on tiny random checkpoints."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from conftest import assert_close
from fake_talk import grid_mesh
from mmtalker.audio.encoders import build_audio_encoder, features_at_fps
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError
from mmtalker.inference.api import MMTalker
from mmtalker.inference.random_model import build_random_model
from mmtalker.mesh.io import Mesh
from mmtalker.models.mmtalker import MMTalkerConfig

SIZES = dict(d_model=16, gcn_layers=2, num_region_tokens=4, heads=2, audio_layers=2, fourier_frequencies=3,
             regressor_hidden=16, regressor_layers=[8])


def tiny_model(seed=0, encoder="logmel", fps=25.0, n=8, **overrides):
    """A random MMTalker on an n×n grid face; logmel features (no weights) unless told otherwise."""
    dim = 384 if encoder == "whisper-tiny.en" else 80
    config = MMTalkerConfig(subjects=["alice", "bob"], audio_encoder=encoder, audio_dim=dim, fps=fps, **{**SIZES, **overrides})
    return build_random_model(grid_mesh(n), config, seed=seed)


def tiny_checkpoint(path, **kw):
    from mmtalker.train.checkpoint import save_checkpoint

    return save_checkpoint(path, tiny_model(**kw))


def speechlike(seconds, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    env = np.interp(np.arange(n), np.linspace(0, n, int(seconds * 5) + 2), rng.uniform(0, 1, int(seconds * 5) + 2))
    t = np.arange(n) / SAMPLE_RATE
    return (0.4 * env * np.sin(2 * np.pi * 180 * t * (1 + 0.3 * env)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def reference_animation(model, audio, subject, templates=None):
    """The network run on the whole clip at once through the model's own inference entry point."""
    enc = build_audio_encoder(model.config.audio_encoder)
    T = max(1, round(len(audio) / SAMPLE_RATE * model.config.fps))
    with torch.no_grad():
        feats = features_at_fps(enc(torch.from_numpy(audio)[None]), enc.rate, model.config.fps, T)
    subject = torch.tensor([subject])
    disp = model.predict_vertices(feats, subject, templates)[0].numpy()
    rest = model.templates_for(subject)[0].numpy() if templates is None else templates[0].numpy()
    return disp + rest


def test_from_pretrained_animates_like_the_network(tmp_path):
    tiny_checkpoint(tmp_path / "ck", seed=3)
    talker = MMTalker.from_pretrained(tmp_path / "ck")
    assert talker.fps == 25.0 and talker.styles == ["alice", "bob"] and talker.num_vertices == 64
    assert isinstance(talker.template_mesh, Mesh) and talker.template_mesh.faces.shape[1] == 3
    audio = speechlike(2.3)
    out = talker.animate(audio, style="bob")
    assert out.shape == (round(2.3 * 25), 64, 3) and out.dtype == np.float32
    assert_close(out, reference_animation(talker.model, audio, 1), atol=1e-5, what="api vs predict_vertices")
    # no style: the mean training style (the model's unseen-subject index)
    assert_close(talker.animate(audio), reference_animation(talker.model, audio, -1), atol=1e-5, what="mean style")
    assert np.abs(out - talker.animate(audio, style="alice")).max() > 1e-6  # the style matters


def test_audio_file_and_other_rates(tmp_path):
    import soundfile as sf

    talker = MMTalker.from_model(tiny_model())
    audio = speechlike(1.0)
    sf.write(tmp_path / "a.flac", audio, SAMPLE_RATE)
    assert_close(talker.animate(tmp_path / "a.flac"), talker.animate(audio), atol=1e-4, what="flac vs array")
    from mmtalker.audio.io import resample_audio

    at_44k = resample_audio(audio, SAMPLE_RATE, 44100)
    assert talker.animate(at_44k, sample_rate=44100).shape == (25, 64, 3)
    assert talker.animate(audio, num_frames=40).shape == (40, 64, 3)  # longer than the audio: silence padded


@pytest.mark.parametrize("bad, message", [
    (np.zeros(100, np.float32), "ms long"),
    (np.full(1000, np.nan, np.float32), "NaN"),
    (np.zeros((2, 1000), np.float32), "1-D"),
])
def test_bad_audio_is_refused(bad, message):
    talker = MMTalker.from_model(tiny_model())
    with pytest.raises(MMTalkerError, match=message):
        talker.animate(bad)


def test_unknown_style_lists_the_styles():
    talker = MMTalker.from_model(tiny_model())
    with pytest.raises(MMTalkerError, match="alice, bob"):
        talker.animate(speechlike(0.5), style="carol")


def test_missing_truncated_and_foreign_checkpoints(tmp_path):
    with pytest.raises(MMTalkerError, match="not found"):
        MMTalker.from_pretrained(tmp_path / "nowhere")
    tiny_checkpoint(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(MMTalkerError, match="truncated"):
        MMTalker.from_pretrained(tmp_path / "ck")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"architectures": ["WhisperForConditionalGeneration"]}))
    with pytest.raises(MMTalkerError, match="not an mmtalker checkpoint"):
        MMTalker.from_pretrained(foreign)


def test_same_topology_template_is_the_rest_shape():
    model = tiny_model(seed=1)
    talker = MMTalker.from_model(model)
    audio = speechlike(1.2)
    own = model.template.numpy() * 1.2 + np.float32([0.0, 0.002, 0.0])  # another face, in place (within 5 % of its size)
    out = talker.animate(audio, template=own, style="alice")
    assert_close(out, reference_animation(model, audio, 0, torch.from_numpy(own)[None]), atol=1e-5, what="own template")
    with pytest.raises(MMTalkerError, match="must be finite"):
        talker.animate(audio, template=own[:10])


def test_subdivided_template_is_retargeted_through_uv():
    import trimesh.remesh

    model = tiny_model(seed=2, n=7)
    talker = MMTalker.from_model(model)
    base = talker.template_mesh
    verts, faces = trimesh.remesh.subdivide(base.vertices, base.faces)
    assert len(verts) > base.num_vertices
    audio = speechlike(1.5)
    plain = talker.animate(audio)
    fine = talker.animate(audio, template=Mesh(verts.astype(np.float32), faces.astype(np.int64)))
    assert fine.shape == (plain.shape[0], len(verts), 3)
    motion = np.abs(plain - base.vertices).max()
    assert motion > 0
    # the subdivision keeps the original vertices first and in place: they move as in the plain animation
    assert_close(fine[:, : base.num_vertices], plain, atol=1e-3 * motion, what="original vertices")
    # a midpoint moves close to the mean of its edge's two ends (the field is smooth on a fine grid)
    mid = fine[:, base.num_vertices :] - verts[None, base.num_vertices :]
    assert np.isfinite(mid).all() and np.abs(mid).max() < 2 * motion


def test_mesh_off_the_face_is_refused():
    talker = MMTalker.from_model(tiny_model())
    base = talker.template_mesh
    moved = Mesh(base.vertices[:-8] + np.float32([0, 0, 0.5]), base.faces[: len(base.faces) // 2])
    moved.faces[moved.faces >= len(moved.vertices)] = 0
    with pytest.raises(MMTalkerError, match="does not lie on the checkpoint's face"):
        talker.animate(speechlike(0.5), template=moved)


def _turn(axis: int, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    i, j = [k for k in range(3) if k != axis]
    rotation = np.eye(3)
    rotation[i, i] = rotation[j, j] = np.cos(a)
    rotation[i, j], rotation[j, i] = -np.sin(a), np.sin(a)
    return rotation


@pytest.mark.parametrize("axis, degrees, shift", [(1, 0.0, [0.0, 1.6, 0.0]), (0, 90.0, [0.0, 0.0, 0.0]),
                                                  (2, 30.0, [0.3, -0.2, 1.7])])
def test_a_face_placed_or_turned_elsewhere_moves_as_the_same_face_in_place(axis, degrees, shift):
    """A head at standing height or a Z-up export of the checkpoint's face used to barely move its mouth (the network
    saw a face where it never learnt one); it now moves exactly as that face in place, moved and turned alike."""
    model = tiny_model(seed=3)
    talker = MMTalker.from_model(model)
    base = talker.template_mesh
    audio = speechlike(1.0)
    in_place = talker.animate(audio, template=base)
    rotation, offset = _turn(axis, degrees), np.float32(shift)
    placed = Mesh((base.vertices @ rotation.T + offset).astype(np.float32), base.faces)
    with pytest.warns(UserWarning, match="from the checkpoint's face: animated moved onto it, its motion brought back") as seen:
        moved = talker.animate(audio, template=placed)
    assert seen[0].filename == __file__  # the caller's line, not the library's
    assert np.abs(in_place - base.vertices).max() > 0
    assert_close((moved - offset) @ rotation, in_place, atol=1e-5, what="the placed face's motion, brought back")
    with warnings.catch_warnings():  # evaluation scores a dataset's templates where they are, as training saw them
        warnings.simplefilter("error")
        kept = talker.prepare_face(template=placed, place=False)
    assert kept.turn is None and np.array_equal(kept.rest, placed.vertices)


def test_a_scaled_asset_moves_as_the_face_at_its_size_and_another_head_size_as_itself():
    """A face 1.5× or 0.5× the checkpoint's (a scaled asset) got the checkpoint's motion in absolute units: a mouth
    far too small or large for it. It is now animated at the checkpoint's size and its motion scaled back; a head 10 %
    larger (people differ so) stays as it is."""
    model = tiny_model(seed=3)
    talker = MMTalker.from_model(model)
    base = talker.template_mesh
    audio = speechlike(1.0)
    in_place = talker.animate(audio, template=base)
    centre = base.vertices.mean(axis=0)
    for ratio in (1.5, 0.5):
        asset = Mesh((centre + (base.vertices - centre) * ratio).astype(np.float32), base.faces)
        with pytest.warns(UserWarning, match=f"is {ratio:g}× the size of the checkpoint's face.*scaled with it"):
            out = talker.animate(audio, template=asset)
        assert_close(centre + (out - centre) / ratio, in_place, atol=1e-5, what=f"a {ratio}× asset, brought back")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert talker.prepare_face(template=Mesh(centre + (base.vertices - centre) * 1.1, base.faces)).turn is None


def test_a_face_where_a_training_subject_sat_is_animated_where_it_is():
    """A dataset whose subjects were captured in different places: the network saw faces there, so a template near
    any training subject's stays put (evaluation of such a dataset is not moved, nor warned about per sequence)."""
    model = tiny_model(seed=3)
    lifted = np.float32([0.0, 1.6, 0.0])
    model.subject_templates[1] = model.template + torch.from_numpy(lifted)  # bob was captured 1.6 m up
    talker = MMTalker.from_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        face = talker.prepare_face(template=Mesh(talker.template_mesh.vertices + lifted, talker.template_mesh.faces))
    assert face.turn is None


def test_a_mirrored_face_moves_as_the_face_in_place_and_a_scrambled_one_is_refused():
    """A face exported to the other handedness (one axis flipped) is the same face mirrored; a mesh of the
    checkpoint's vertex count whose vertices are in another order is no face the network knows."""
    model = tiny_model(seed=3)
    talker = MMTalker.from_model(model)
    base = talker.template_mesh
    audio = speechlike(1.0)
    in_place = talker.animate(audio, template=base)
    mirror = np.diag([1.0, 1.0, -1.0]).astype(np.float32)
    with pytest.warns(UserWarning, match="is mirrored"):
        moved = talker.animate(audio, template=Mesh(base.vertices @ mirror, base.faces))
    assert_close(moved @ mirror, in_place, atol=1e-5, what="the mirrored face's motion, mirrored back")
    order = np.random.default_rng(0).permutation(base.num_vertices)
    with pytest.raises(MMTalkerError, match="not its face: even moved, turned and scaled onto it"):
        talker.animate(audio, template=Mesh(base.vertices[order], base.faces))


def test_the_same_triangles_in_another_order_corners_or_winding_are_the_same_topology():
    """An exporter that reorders faces, starts them at another corner or reverses them (another handedness) writes
    the checkpoint's topology: such a mesh placed elsewhere was sent to retargeting and refused as off the face."""
    model = tiny_model(seed=3)
    talker = MMTalker.from_model(model)
    base = talker.template_mesh
    audio = speechlike(1.0)
    in_place = talker.animate(audio, template=base)
    shuffled = base.faces[np.random.default_rng(1).permutation(len(base.faces))][:, [1, 2, 0]]
    lifted = np.float32([0.0, 1.6, 0.0])
    with pytest.warns(UserWarning, match="lies 1.6"):
        moved = talker.animate(audio, template=Mesh(base.vertices + lifted, shuffled))
    assert_close(moved - lifted, in_place, atol=1e-5, what="reordered faces, placed elsewhere")
    assert np.array_equal(talker.prepare_face(template=Mesh(base.vertices, shuffled)).faces, shuffled)  # its own faces
    flip = np.diag([1.0, 1.0, -1.0]).astype(np.float32)
    with pytest.warns(UserWarning, match="is mirrored"):
        mirrored = talker.animate(audio, template=Mesh(base.vertices @ flip, base.faces[:, ::-1].copy()))
    assert_close(mirrored @ flip, in_place, atol=1e-5, what="another handedness, winding reversed")


def test_a_remeshed_copy_a_few_cm_off_the_face_is_refused():
    """The closest-point map of a copy 2.5 cm off the face read the lips' motion at the chin: refused now that at
    most 4 % of the face's size (9 mm on FLAME's head) counts as on the face; a copy in centimetres gets the unit hint."""
    import trimesh.remesh

    talker = MMTalker.from_model(tiny_model(seed=2, n=7))
    base = talker.template_mesh
    verts, faces = trimesh.remesh.subdivide(base.vertices, base.faces)
    size = float(np.ptp(base.vertices, axis=0).max())
    off = Mesh((verts + np.float32([0, 0, 0.25 * size])).astype(np.float32), faces.astype(np.int64))
    with pytest.raises(MMTalkerError, match="does not lie on the checkpoint's face.*across; at most"):
        talker.animate(speechlike(0.5), template=off)
    with pytest.raises(MMTalkerError, match=r"is 100× the size of the face the checkpoint was trained on.*mm and m"):
        talker.animate(speechlike(0.5), template=Mesh((verts * 100).astype(np.float32), faces.astype(np.int64)))


def test_window_longer_than_the_encoder_takes_is_refused():
    talker = MMTalker.from_model(tiny_model(encoder="whisper-tiny.en"))
    with pytest.raises(MMTalkerError, match="longer than the speech encoder"):
        talker.animate(speechlike(0.5), window_s=40)


def test_unseen_subjects_in_every_training_style(tmp_path, capsys):
    """unseen_styles="all": a subject outside the training styles gets one prediction per style (each the
    animation in that style), a training subject still one; `mmtalker evaluate --unseen-styles all` counts them."""
    from fake_talk import write_fake_dataset
    from mmtalker.cli import main
    from mmtalker.data.dataset import open_dataset
    from mmtalker.inference.evaluate import checkpoint_predictor
    from mmtalker.train.checkpoint import save_checkpoint

    root = write_fake_dataset(tmp_path / "data", clips_per_subject=2)
    dataset = open_dataset(root)
    config = MMTalkerConfig(subjects=["s01", "s09"], audio_encoder="logmel", audio_dim=80, fps=25.0, **SIZES)  # the data's rate
    save_checkpoint(tmp_path / "ck", build_random_model(dataset.topology(), config, seed=8))
    talker = MMTalker.from_pretrained(tmp_path / "ck")
    _, predict = checkpoint_predictor(tmp_path / "ck", dataset, unseen_styles="all")
    seqs = dataset.sequences("test")
    for seq in seqs:
        preds = predict(seq)
        styles = ["s01"] if seq.subject == "s01" else ["s01", "s09"]
        assert len(preds) == len(styles)
        for pred, style in zip(preds, styles):
            direct = talker.animate(seq.audio(), style=style, template=dataset.template(seq.subject), num_frames=seq.num_frames)
            assert_close(pred, direct, atol=1e-6, what=f"{seq.key} in style {style}")
    assert abs(predict(seqs[-1])[0] - predict(seqs[-1])[1]).max() > 0  # the styles differ
    with pytest.raises(MMTalkerError, match="not one of mean, all"):
        checkpoint_predictor(tmp_path / "ck", dataset, unseen_styles="median")
    unseen = sum(s.subject != "s01" for s in seqs)
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(tmp_path / "ck"), "--unseen-styles", "all"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| MMTalker"))
    assert f"| {len(seqs) + unseen} |" in row  # each unseen subject's sequence counted once per style


def test_lazy_package_export():
    import mmtalker

    assert mmtalker.MMTalker is MMTalker


@pytest.mark.parametrize("model_fps", [25.0, 30.0])
def test_checkpoint_predictor_for_evaluate(tmp_path, model_fps, capsys):
    """Known subjects keep their style, unseen ones get the mean style; frame counts match the dataset's."""
    from fake_talk import write_fake_dataset
    from mmtalker.cli import main
    from mmtalker.data.dataset import open_dataset
    from mmtalker.inference.evaluate import checkpoint_predictor
    from mmtalker.train.checkpoint import save_checkpoint

    root = write_fake_dataset(tmp_path / "data", clips_per_subject=2)
    dataset = open_dataset(root)
    config = MMTalkerConfig(subjects=["s01"], audio_encoder="logmel", audio_dim=80, fps=model_fps, **SIZES)
    save_checkpoint(tmp_path / "ck", build_random_model(dataset.topology(), config, seed=8))
    name, predict = checkpoint_predictor(tmp_path / "ck", dataset)
    assert "MMTalker" in name
    talker = MMTalker.from_pretrained(tmp_path / "ck")
    for seq in dataset.sequences("test"):
        (pred,) = predict(seq)
        assert pred.shape == (seq.num_frames, dataset.manifest.num_vertices, 3) and pred.dtype == np.float32
        style = "s01" if seq.subject == "s01" else None
        direct = talker.animate(seq.audio(), style=style, template=dataset.template(seq.subject))
        if model_fps == seq.fps:
            assert_close(pred, direct[: seq.num_frames], atol=1e-6, what=f"prediction for {seq.key}")
        else:  # resampled to the dataset's rate: the same motion, frame for frame in time
            assert_close(pred[0], direct[0], atol=1e-6, what="first frame")
    assert main(["evaluate", "--data", str(root), "--checkpoint", str(tmp_path / "ck")]) == 0
    assert "MMTalker (ck)" in capsys.readouterr().out
    if model_fps == 30.0:  # two runs' checkpoints in folders of one name: each row names its run folder too
        for run in ("run_a", "run_b"):
            save_checkpoint(tmp_path / run / "ck", build_random_model(dataset.topology(), config, seed=8))
        assert main(["evaluate", "--data", str(root), "--checkpoint", str(tmp_path / "run_a" / "ck"),
                     "--checkpoint", str(tmp_path / "run_b" / "ck")]) == 0
        out = capsys.readouterr().out
        assert "| MMTalker (ck) [run_a] |" in out and "| MMTalker (ck) [run_b] |" in out


def test_device_is_checked_before_loading(tmp_path):
    from mmtalker.devices import resolve_device
    from mmtalker.train.loop import setup_distributed

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MMTalkerError, match="not one of cpu, cuda, cuda:N, auto"):
        resolve_device("gpu")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 without any)
    with pytest.raises(MMTalkerError, match="not available on this machine"):
        resolve_device(missing)
    # the trainer reads optim.device through the same check (it used to take cuda:0 for any cuda:N)
    with pytest.raises(MMTalkerError, match="not available on this machine"):
        setup_distributed(missing)
    assert setup_distributed("cpu")[1] == torch.device("cpu")
    tiny_checkpoint(tmp_path / "ckpt")
    talker = MMTalker.from_pretrained(tmp_path / "ckpt", device="auto")
    assert talker.engine.device.type == resolve_device("auto")


def test_animate_command_refuses_a_missing_gpu(tmp_path, capsys):
    from mmtalker.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny_checkpoint(tmp_path / "ckpt")
    import soundfile as sf

    sf.write(tmp_path / "a.wav", speechlike(1.0), SAMPLE_RATE)
    code = main(["animate", "--checkpoint", str(tmp_path / "ckpt"), "--audio", str(tmp_path / "a.wav"),
                 "--out", str(tmp_path / "a.npy"), "--device", "cuda"])
    assert code == 1 and "device 'cuda': is not available on this machine" in capsys.readouterr().err
    assert not (tmp_path / "a.npy").exists()
