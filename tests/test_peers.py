"""The peers (VOCA, FaceFormer, CodeTalker): shapes, FaceFormer's masks against naive loops, autoregressive
decoding against teacher forcing, the VQ losses and straight-through gradient by hand, training steps that
lower each loss, checkpoints through the shared format, the model-kind registry."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_close
from mmtalker.errors import MMTalkerError
from mmtalker.models import registry
from mmtalker.models.codetalker import CodeTalker, CodeTalkerConfig, VectorQuantizer, vq_losses
from mmtalker.models.faceformer import (
    FaceFormer,
    FaceFormerConfig,
    alibi_slopes,
    alignment_mask,
    biased_causal_mask,
    periodic_positional_encoding,
)
from mmtalker.models.voca import VOCA, VocaConfig, frame_windows
from mmtalker.train import checkpoint as ckpt

V, C = 30, 12


def _close(actual, expected, **kw):
    """conftest.assert_close on tensors that may carry gradients."""
    detach = lambda x: x.detach() if torch.is_tensor(x) else x  # noqa: E731
    assert_close(detach(actual), detach(expected), **kw)
SUBJECTS = ["a", "b", "c"]


def _model(kind: str, **kw):
    torch.manual_seed(0)
    cls, cfg = {"voca": (VOCA, VocaConfig), "faceformer": (FaceFormer, FaceFormerConfig), "codetalker": (CodeTalker, CodeTalkerConfig)}[kind]
    extra = {"period": 4} if kind != "voca" else {}
    config = cfg(**{"subjects": SUBJECTS, "audio_dim": C, **extra, **kw})
    template = torch.randn(V, 3)
    model = cls(config, template, torch.randn(len(SUBJECTS), V, 3), 0.01, torch.tensor([[0, 1, 2], [2, 3, 4]]))
    if kind == "faceformer":
        torch.nn.init.normal_(model.motion_out.weight, std=0.05)  # zero-initialised: make outputs move
    if kind == "voca":
        torch.nn.init.normal_(model.decoder.weight, std=0.05)
    if kind == "codetalker":
        model.stages_trained.fill_(2)
        torch.nn.init.normal_(model.vqvae.quantizer.codebook.weight)
    return model


# ------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind", ["voca", "faceformer", "codetalker"])
@pytest.mark.parametrize("T", [1, 7])
def test_prediction_shapes_and_unseen_subject(kind, T):
    model = _model(kind).eval()
    audio = torch.randn(2, T, C)
    out = model.predict_vertices(audio, torch.tensor([1, -1]))
    assert out.shape == (2, T, V, 3) and torch.isfinite(out).all()


def test_ragged_batch_matches_single_clips_for_causal_and_windowed_models():
    """Padding at the end must not change the real frames: FaceFormer is causal, VOCA's windows are zeroed
    on padded frames (so a clip equals itself alone with the same zero context beyond its end)."""
    audio = torch.randn(2, 9, C)
    mask = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    for kind in ("voca", "faceformer"):
        model = _model(kind).eval()
        both = model.motion(audio, torch.tensor([0, 1]), mask)
        alone = model.motion(audio[1:, :5], torch.tensor([1]))
        assert both[1, :5].abs().max() > 1e-3
        _close(both[1, :5], alone[0], atol=1e-5, what=f"{kind} ragged")


def test_voca_windows_against_loop():
    x = torch.randn(2, 6, 3)
    k = 2
    w = frame_windows(x, k)
    for b in range(2):
        for t in range(6):
            for o in range(-k, k + 1):
                want = x[b, t + o] if 0 <= t + o < 6 else torch.zeros(3)
                assert torch.equal(w[b, t, o + k], want)


def test_voca_pca_init_reproduces_training_offsets():
    """With the decoder set from the 3 main PCA directions, rank-3 offsets lie in its span: least-squares codes
    reconstruct them exactly."""
    model = _model("voca", latent=3)
    basis = torch.randn(3, V * 3)
    offsets = (torch.randn(40, 3) @ basis + torch.randn(V * 3)).reshape(40, V, 3)
    model.init_decoder_pca(offsets)
    W, b = model.decoder.weight, model.decoder.bias
    codes = torch.linalg.lstsq(W, (offsets.reshape(40, -1) - b).T).solution
    _close((W @ codes).T + b, offsets.reshape(40, -1), atol=1e-4, what="PCA span")


# ----------------------------------------------------------------------------------------- FaceFormer masks
def test_biased_causal_mask_against_naive():
    T, H, p = 11, 4, 3
    slopes = [2.0 ** (-8.0 * (h + 1) / H) for h in range(H)]
    _close(alibi_slopes(H), torch.tensor(slopes))
    mask = biased_causal_mask(T, H, p)
    for h in range(H):
        for i in range(T):
            for j in range(T):
                want = -math.inf if j > i else -slopes[h] * ((i - j) // p)
                assert mask[h, i, j].item() == pytest.approx(want)
    # periodicity: the bias is constant within each period of distance, steps by the slope across
    assert mask[0, 5, 5] == mask[0, 5, 4] == mask[0, 5, 3] == 0
    assert mask[0, 5, 2].item() == pytest.approx(-slopes[0])
    assert torch.equal(biased_causal_mask(T, H, p, first=7), mask[:, 7:])


def test_alignment_mask_against_naive():
    for T, S, r in [(5, 5, 1), (4, 8, 2), (6, 4, 1)]:
        mask = alignment_mask(T, S, r)
        for i in range(T):
            allowed = {j for j in range(S) if i * r <= j < (i + 1) * r} or {S - 1}
            for j in range(S):
                assert (mask[i, j].item() == 0) == (j in allowed), (T, S, r, i, j)
        assert torch.equal(alignment_mask(T, S, r, first=2), mask[2:])


def test_periodic_positional_encoding_repeats():
    pe = periodic_positional_encoding(20, 8, 6)
    _close(pe[6:12], pe[:6])
    _close(pe[0], torch.tensor([0.0, 1.0] * 4))
    _close(pe[3, 0], torch.tensor(math.sin(3.0)), what="sin of position")
    _close(periodic_positional_encoding(20, 8, 6, first=13), pe[13:])


@pytest.mark.parametrize("kind", ["faceformer", "codetalker"])
def test_autoregressive_equals_teacher_forcing_on_own_outputs(kind):
    model = _model(kind, layers=2).eval()
    audio, subject = torch.randn(2, 9, C), torch.tensor([2, -1])
    with torch.no_grad():
        if kind == "faceformer":
            ar = model.motion(audio, subject)
            _close(model(audio, subject, ar), ar, atol=1e-5, what="teacher-forced on AR output")
        else:  # the AR path's quantised latents, fed back teacher-forced, give the same features' codes
            ar = model.motion(audio, subject)
            q = model.vqvae.quantizer
            feats_ar = []
            style = model.style(model.style_weights(subject))
            caches, kv, token = [[] for _ in model.decoder.layers], model.decoder.audio_keys(audio), style[:, None]
            for t in range(9):
                f = model._features(model.decoder.step(token, t, kv, caches, 9))
                feats_ar.append(f)
                token = model._tokens(q.codebook(q.indices(f)), style)
            feats_ar = torch.cat(feats_ar, 1)
            codes = q.codebook(q.indices(feats_ar))
            _close(model.speech_to_latents(audio, subject, codes), feats_ar, atol=1e-5, what="features")
            _close(model.vqvae.decode(codes), ar, atol=1e-6, what="decoded")


def test_faceformer_has_no_length_limit():
    model = _model("faceformer").eval()
    out = model.predict_vertices(torch.randn(1, 700, C), torch.tensor([0]))
    assert out.shape == (1, 700, V, 3) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------ VQ layer
def test_vq_losses_and_straight_through_by_hand():
    q = VectorQuantizer(3, 2)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    z = torch.tensor([[[[0.9, 0.6]], [[-1.2, 0.1]]]], requires_grad=True)  # (B=1, T=2, N=1, c=2)
    z_st, e, idx = q(z)
    assert idx.tolist() == [[[1], [2]]]  # |z0−e1|² = 0.17 < 0.81; |z1−e2|² = 0.65 < 1.45
    _close(z_st, torch.tensor([[[[1.0, 1.0]], [[-2.0, 0.0]]]]), what="forward value = entries")
    cb, cm = vq_losses(z, e)
    # mean over T·N·c = 4 numbers: (0.01 + 0.16 + 0.64 + 0.01) / 4
    assert cb.item() == pytest.approx(0.82 / 4) and cm.item() == pytest.approx(0.82 / 4)
    (z_st * torch.tensor([1.0, 2.0])).sum().backward()
    _close(z.grad, torch.tensor([[[[1.0, 2.0]], [[1.0, 2.0]]]]), what="straight-through gradient")
    z.grad = None
    cb, cm = vq_losses(z, e)
    cm.backward()
    _close(z.grad, 2 * (z - e).detach() / 4, what="commitment gradient goes to z only")
    assert q.codebook.weight.grad is None
    cb.backward()
    _close(q.codebook.weight.grad[1], -2 * (z[0, 0, 0] - e[0, 0, 0]).detach() / 4, what="codebook gradient")
    masked = vq_losses(z, e, torch.tensor([[True, False]]))[0]
    assert masked.item() == pytest.approx((0.01 + 0.16) / 2)


def test_codetalker_needs_stage_two_to_speak():
    model = _model("codetalker")
    model.stages_trained.fill_(1)
    with pytest.raises(MMTalkerError, match="stage 1"):
        model.predict_vertices(torch.randn(1, 3, C), torch.tensor([0]))


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def fake_setup(tmp_path_factory):
    """The tiny fake dataset through the peers' real setup (MMTalker's pipeline), with the log-mel encoder."""
    from fake_talk import write_fake_dataset
    from mmtalker.train.peers import build_peer_setup, load_peer_config

    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data")
    cache = tmp_path_factory.mktemp("cache")
    repo = Path(__file__).resolve().parents[1]

    def make(kind, **sections):
        ov = {"data": {"path": str(root), "cache_dir": str(cache), "augment_variants": 0, "window_frames": 16},
              "model": {"audio_encoder": "logmel", "audio_finetune": 0}, "optim": {"epochs": 2, "max_minutes": None, "batch_size": 4,
                                                              "warmup_steps": 1, "device": "cpu", "lr": 3e-3}}
        for k, v in sections.items():
            ov.setdefault(k, {}).update(v)
        config = load_peer_config(repo / "configs" / f"{kind}_synth.yaml", ov)
        torch.manual_seed(0)
        return config, build_peer_setup(config, torch.device("cpu"))

    return make


@pytest.mark.parametrize("kind,stage", [("voca", 0), ("faceformer", 0), ("codetalker", 1), ("codetalker", 2)])
def test_training_steps_lower_the_loss(fake_setup, kind, stage):
    from mmtalker.train.data import make_batch
    from mmtalker.train.peers import Phase

    config, setup = fake_setup(kind)
    adapter = registry.get_kind(kind).training_adapter()
    model = setup.model
    if stage == 2:  # a quick stage 1 first, so that the codes mean something
        adapter.begin(Phase(1, "", 1.0), setup, config)
        _steps(adapter, setup, config, Phase(1, "", 1.0), 15)
    phase = Phase(stage, "", 1.0)
    adapter.begin(phase, setup, config)
    rng = np.random.default_rng(0)
    batch = make_batch(setup.train_clips[:4], rng, 16)
    target = batch.disp / float(model.motion_scale)
    before = adapter.step(model, batch, target, setup.vertex_weight, config.loss, phase)[1]
    frozen = {k: v.clone() for k, v in model.vqvae.state_dict().items()} if stage == 2 else {}
    opt = torch.optim.Adam(adapter.parameters(model, phase), lr=3e-3)
    for _ in range(25):
        opt.zero_grad()
        loss, _ = adapter.step(model, batch, target, setup.vertex_weight, config.loss, phase)
        loss.backward()
        opt.step()
    after = adapter.step(model, batch, target, setup.vertex_weight, config.loss, phase)[1]
    for key in ("loss", "recon", "latent"):
        if key in before:
            assert after[key] < before[key], (kind, stage, key, before[key], after[key])
    for k, v in frozen.items():
        assert torch.equal(model.vqvae.state_dict()[k], v), f"stage 2 changed the frozen VQ-VAE ({k})"


def _steps(adapter, setup, config, phase, n):
    from mmtalker.train.data import make_batch

    opt = torch.optim.Adam(adapter.parameters(setup.model, phase), lr=3e-3)
    rng = np.random.default_rng(1)
    for _ in range(n):
        batch = make_batch(setup.train_clips[:4], rng, 16)
        opt.zero_grad()
        adapter.step(setup.model, batch, batch.disp / float(setup.model.motion_scale), setup.vertex_weight, config.loss, phase)[0].backward()
        opt.step()


def test_codetalker_run_trains_both_stages_then_stage_two_alone_from_stage_one(fake_setup, tmp_path):
    """One run: stage1/ then the run folder; a second run of stage 2 alone from the first's stage-1 checkpoint."""
    from mmtalker.train.peers import train_peer

    config, _ = fake_setup("codetalker")
    results = train_peer(config, tmp_path / "run")
    assert (tmp_path / "run" / "stage1" / "best" / "model.safetensors").is_file()
    assert "test" in results and results["test"]["mve"] > 0
    model, _, extras = registry.load_model(tmp_path / "run" / "best", expect="codetalker")
    assert int(model.stages_trained) == 2 and extras["stage"] == 2
    stage2 = dataclasses.replace(config, stages=dataclasses.replace(config.stages, train=[2], stage1_checkpoint=str(tmp_path / "run" / "stage1" / "best")))
    train_peer(stage2, tmp_path / "run2")
    s1 = registry.load_model(tmp_path / "run" / "stage1" / "best")[0]
    s2 = registry.load_model(tmp_path / "run2" / "best")[0]
    for k, v in s1.vqvae.state_dict().items():
        assert torch.equal(s2.vqvae.state_dict()[k], v), k


# --------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["voca", "faceformer", "codetalker"])
def test_checkpoint_round_trip_and_kind_checks(kind, tmp_path):
    model = _model(kind).eval()
    ckpt.save_checkpoint(tmp_path / "m", model, {"epoch": 3})
    assert registry.checkpoint_kind(tmp_path / "m") == kind
    loaded, config, extras = registry.load_model(tmp_path / "m", expect=kind)
    assert type(loaded) is type(model) and config == model.config and extras == {"epoch": 3}
    audio, subject = torch.randn(1, 5, C), torch.tensor([1])
    _close(loaded.predict_vertices(audio, subject), model.predict_vertices(audio, subject), atol=0, rtol=0)
    other = "voca" if kind != "voca" else "faceformer"
    with pytest.raises(MMTalkerError, match=f"is a {kind} checkpoint"):
        registry.load_model(tmp_path / "m", expect=other)
    with pytest.raises(MMTalkerError):  # MMTalker's own loader refuses a peer's checkpoint
        ckpt.load_checkpoint(tmp_path / "m")


def test_a_peer_is_scored_past_the_encoders_30_s_in_windows(tmp_path):
    """A 35 s sequence (Whisper takes 30 s) is animated in windows like MMTalker's: no error, the frames before
    the first crossfade are those of the first window animated alone, and the crossfade blends the two."""
    from types import SimpleNamespace

    from mmtalker.inference.evaluate import checkpoint_predictor

    torch.manual_seed(0)
    config = VocaConfig(subjects=SUBJECTS)  # Whisper tiny.en features, 30 fps
    rest = torch.randn(V, 3)
    model = VOCA(config, rest, torch.randn(len(SUBJECTS), V, 3), 0.01, torch.tensor([[0, 1, 2], [2, 3, 4]]))
    torch.nn.init.normal_(model.decoder.weight, std=0.05)
    ckpt.save_checkpoint(tmp_path / "voca", model.eval())
    template = rest.numpy()  # the dataset's face, in the checkpoint's units (a point-sized one is refused)
    dataset = SimpleNamespace(manifest=SimpleNamespace(num_vertices=V), template=lambda subject: template)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(35 * 16000)).astype(np.float32)
    seq = SimpleNamespace(subject="a", num_frames=35 * 30, fps=30.0, audio=lambda: audio)
    _, predict = checkpoint_predictor(tmp_path / "voca", dataset, window_s=20.0, overlap_s=3.0)
    (pred,) = predict(seq)
    assert pred.shape == (35 * 30, V, 3) and np.isfinite(pred).all()
    first = SimpleNamespace(subject="a", num_frames=20 * 30, fps=30.0, audio=lambda: audio[: 20 * 16000])
    (alone,) = predict(first)
    assert_close(pred[: 17 * 30], alone[: 17 * 30], atol=1e-6, what="frames before the first crossfade")
    assert np.abs(pred[17 * 30 + 45] - alone[17 * 30 + 45]).max() > 1e-6  # mid-crossfade: the second window counts


@pytest.mark.parametrize("kind", ["voca", "faceformer", "codetalker"])
def test_a_peer_checkpoint_animates_speech_through_the_api_and_the_cli(kind, tmp_path):
    """MMTalker.from_pretrained takes a peer's checkpoint: the subject's template plus the model's offsets,
    frame for frame; `mmtalker animate` writes them; other topologies, streaming and a CodeTalker trained to
    stage 1 only are refused by name."""
    from mmtalker.audio.encoders import build_audio_encoder, features_at_fps
    from mmtalker.audio.io import save_wav
    from mmtalker.cli import main
    from mmtalker.inference.api import MMTalker
    from mmtalker.mesh.io import Mesh

    model = _model(kind, audio_encoder="logmel", audio_dim=80).eval()
    ckpt.save_checkpoint(tmp_path / "ck", model)
    talker = MMTalker.from_pretrained(tmp_path / "ck")
    assert talker.kind == kind and talker.styles == SUBJECTS and talker.num_vertices == V
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(1.3 * 16000))).astype(np.float32)
    verts = talker.animate(audio, style="b")
    encoder = build_audio_encoder("logmel")
    feats = features_at_fps(encoder(torch.from_numpy(audio)[None]), encoder.rate, 30.0, 39)
    expected = model.predict_vertices(feats, torch.tensor([1]))[0].numpy() + model.subject_templates[1].numpy()
    assert verts.shape == (39, V, 3)
    assert_close(verts, expected, atol=1e-5, what=f"{kind} through the API")
    with pytest.raises(MMTalkerError, match="training mesh only"):
        talker.animate(audio, template=Mesh(vertices=rng.standard_normal((V + 1, 3)).astype(np.float32), faces=np.array([[0, 1, 2]])))
    with pytest.raises(MMTalkerError, match="streaming needs an MMTalker"):
        talker.stream()
    save_wav(tmp_path / "speech.wav", audio)
    assert main(["animate", "--checkpoint", str(tmp_path / "ck"), "--audio", str(tmp_path / "speech.wav"),
                 "--out", str(tmp_path / "anim.npz"), "--style", "b"]) == 0
    with np.load(tmp_path / "anim.npz") as saved:
        assert_close(saved["vertices"], verts, atol=1e-5, what="mmtalker animate's file")
    if kind == "codetalker":
        model.stages_trained.fill_(1)
        ckpt.save_checkpoint(tmp_path / "stage1", model)
        with pytest.raises(MMTalkerError, match="stage 1 of 2 only"):
            MMTalker.from_pretrained(tmp_path / "stage1")


def test_checkpoint_with_mismatched_weights_is_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "m", _model("voca"))
    meta = (tmp_path / "m" / "config.json").read_text().replace('"latent": 50', '"latent": 40')
    (tmp_path / "m" / "config.json").write_text(meta)
    with pytest.raises(MMTalkerError, match="do not fit"):
        registry.load_model(tmp_path / "m")


def test_registry_kinds_and_config_kind(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    assert registry.config_kind(repo / "configs" / "faceformer_biwi.yaml") == "faceformer"  # through base:
    assert registry.config_kind(repo / "configs" / "mmtalker_synth.yaml") == "mmtalker"
    bad = tmp_path / "x.yaml"
    bad.write_text("kind: wav2lip\n")
    with pytest.raises(MMTalkerError, match="unknown model kind"):
        registry.config_kind(bad)
    for kind in registry.KINDS.values():
        assert kind.model_class().__name__ == kind.class_name
        assert dataclasses.is_dataclass(kind.config_class())


def test_resume_continues_a_finished_phase_and_refuses_an_empty_folder(fake_setup, tmp_path):
    from mmtalker.train.peers import train_peer

    config, _ = fake_setup("voca")
    with pytest.raises(MMTalkerError, match="resume"):
        train_peer(config, tmp_path / "none", resume=True)
    train_peer(config, tmp_path / "run")
    more = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=3))
    train_peer(more, tmp_path / "run", resume=True)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_context_frames_inform_but_stay_out_of_the_peer_loss(fake_setup):
    """VOCA's loss with context frames is the loss of the window alone: truth outside it changes nothing."""
    from mmtalker.train.data import Window, make_batch
    from mmtalker.train.peers import Phase

    config, setup = fake_setup("voca")
    adapter = registry.get_kind("voca").training_adapter()
    phase = Phase(0, "", 1.0)
    adapter.begin(phase, setup, config)
    setup.model.eval()
    clip = max(setup.train_clips, key=lambda c: c.num_frames)
    assert clip.num_frames >= 24
    picks = [Window(0, 4)]
    batch = make_batch([clip], picks, 8, context=4)
    assert batch.loss_mask.sum() == 8 and batch.mask.sum() == 16
    target = batch.disp / float(setup.model.motion_scale)
    loss = adapter.step(setup.model, batch, target, setup.vertex_weight, config.loss, phase)[0]
    outside = ~batch.loss_mask[0]
    moved = target.clone()
    moved[0, outside] += 1.0  # different truth on the context frames only
    assert torch.equal(adapter.step(setup.model, batch, moved, setup.vertex_weight, config.loss, phase)[0], loss)
    moved_inside = target.clone()
    moved_inside[0, batch.loss_mask[0]] += 1.0
    assert adapter.step(setup.model, batch, moved_inside, setup.vertex_weight, config.loss, phase)[0] > loss


def test_faceformer_own_inputs_feed_its_predictions_as_inputs_in_training():
    """With ``own_inputs`` 1 and 2 passes the training forward equals teacher forcing on the model's
    prediction from teacher forcing on its own prediction; with 0, plain teacher forcing; not in eval mode."""
    from types import SimpleNamespace

    from mmtalker.train.config import build_dataclass
    from mmtalker.train.peers import FaceFormerAdapter

    model = _model("faceformer", own_inputs=1.0, own_input_passes=2)
    audio, subject = torch.randn(2, 9, C), torch.tensor([0, 2])
    target = torch.randn(2, 9, V, 3)
    batch = SimpleNamespace(audio=audio, subject=subject, mask=None)
    adapter = FaceFormerAdapter()
    model.train()
    with torch.no_grad():
        twice = model(audio, subject, model(audio, subject, model(audio, subject, target)))
        got = adapter.forward_train(model, batch, target)
        _close(got, twice, atol=1e-5, what="own inputs, 2 passes")
        assert not torch.allclose(got, model(audio, subject, target), atol=1e-4)
        model.config.own_inputs = 0.0
        _close(adapter.forward_train(model, batch, target), model(audio, subject, target), atol=1e-6, what="teacher forcing")
        model.config.own_inputs = 1.0
        model.eval()
        _close(adapter.forward_train(model, batch, target), model(audio, subject, target), atol=1e-6, what="eval mode")
    with pytest.raises(MMTalkerError, match="own_inputs"):
        build_dataclass(FaceFormerConfig, {"own_inputs": 1.5}, "cfg.yaml")
    with pytest.raises(MMTalkerError, match="own_input_passes"):
        build_dataclass(FaceFormerConfig, {"own_input_passes": 0}, "cfg.yaml")


def test_codetalker_own_inputs_feed_its_codes_as_inputs_in_stage_two():
    """With ``own_inputs`` 1 and 2 passes stage 2's input codes are the quantised prediction from teacher
    forcing on its own quantised prediction; with 0, the truth's codes; not in eval mode; bad values refused."""
    from types import SimpleNamespace

    from mmtalker.train.config import build_dataclass
    from mmtalker.train.peers import CodeTalkerAdapter

    model = _model("codetalker", own_inputs=1.0, own_input_passes=2)
    audio, subject = torch.randn(2, 9, C), torch.tensor([0, 2])
    q = model.vqvae.quantizer
    truth = q.codebook(torch.randint(0, model.config.codebook_size, (2, 9, model.config.components)))
    batch = SimpleNamespace(audio=audio, subject=subject, mask=None)
    quantise = lambda feat: q.codebook(q.indices(feat))  # noqa: E731
    model.train()
    with torch.no_grad():
        once = quantise(model.speech_to_latents(audio, subject, truth))
        twice = quantise(model.speech_to_latents(audio, subject, once))
        own_codes = lambda: CodeTalkerAdapter.stage2_inputs(model, batch, truth)  # noqa: E731
        got = own_codes()
        assert torch.equal(got, twice) and not torch.equal(got, truth)
        model.config.own_inputs = 0.0
        assert own_codes() is truth
        model.config.own_inputs = 1.0
        model.eval()
        assert own_codes() is truth
    with pytest.raises(MMTalkerError, match="own_inputs"):
        build_dataclass(CodeTalkerConfig, {"own_inputs": -0.1}, "cfg.yaml")
    with pytest.raises(MMTalkerError, match="own_input_passes"):
        build_dataclass(CodeTalkerConfig, {"own_input_passes": 0}, "cfg.yaml")


@pytest.mark.parametrize("dataset", ["synth", "vocaset", "biwi", "multiface"])
def test_every_shipped_config_loads_and_all_four_models_hear_the_same_encoder(dataset):
    from mmtalker.train.config import load_config
    from mmtalker.train.peers import load_peer_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    mm = load_config(configs / f"mmtalker_{dataset}.yaml")
    specs = {"mmtalker": (mm.model.audio_encoder, mm.model.audio_finetune, mm.optim.audio_lr)}
    for kind in ("voca", "faceformer", "codetalker"):
        config = load_peer_config(configs / f"{kind}_{dataset}.yaml")
        assert config.kind == kind
        specs[kind] = (config.model.audio_encoder, config.model.audio_finetune, config.optim.audio_lr)
    assert len(set(specs.values())) == 1, f"{dataset}: the four models would hear or tune differently: {specs}"
    assert mm.model.audio_finetune == 1  # Whisper's blocks 1-3 tuned with each model (docs/results.md, nineteenth round)
