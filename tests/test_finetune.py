"""Whisper's later blocks fine-tuned with the model (model.audio_finetune): the cached frozen prefix plus the
tuned blocks give exactly the encoder's features; training moves the blocks; inference reads the tuned ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from fake_talk import write_fake_dataset
from mmtalker.audio.encoders import model_audio_encoder
from mmtalker.audio.finetune import TunedBlocks, frozen_prefix, prefix_states, read_states, tuned_range
from mmtalker.cli import main
from mmtalker.errors import MMTalkerError
from mmtalker.models.mmtalker import MMTalkerConfig
from mmtalker.train.data import Clip, Variant, Window, make_batch
from test_train import CONFIGS, TINY, write_config


def _tuned_features(model, plain, audio):
    """What a tuned model's encoder must give: the pretrained encoder's frozen prefix through the model's own blocks."""
    return model.audio_blocks(frozen_prefix(plain, audio, prefix_states(model.config)))


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16000)) / 16000
    wave = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.normal(size=t.size)
    return torch.from_numpy(wave.astype(np.float32))[None]


def test_the_states_cached_and_the_blocks_tuned_follow_the_config():
    config = MMTalkerConfig(audio_encoder="whisper-tiny.en@3+1+2", eye_pathway=True, eye_layer=0, audio_finetune=2)
    assert read_states(config) == [3, 1, 2, 0]
    assert tuned_range(config) == (2, 3)
    assert prefix_states(config) == [0, 1]  # the embeddings (the eye pathway's), and block 1's output, which feeds block 2
    config.audio_finetune = 1
    assert prefix_states(config) == [0] and tuned_range(config) == (1, 3)
    config.audio_finetune = 0
    assert prefix_states(config) is None  # frozen: the features themselves are cached


@pytest.mark.parametrize("spec, finetune, match", [
    ("logmel", 1, "only Whisper"),
    ("whisper-tiny.en", 1, "name its hidden states"),
    ("whisper-tiny.en@-1", 1, "name its hidden states"),
    ("whisper-tiny.en@2+1", 3, "from 1 to 2"),
])
def test_configs_that_cannot_be_fine_tuned_are_refused(spec, finetune, match):
    from mmtalker.train.config import build_dataclass

    with pytest.raises(MMTalkerError, match=match):
        build_dataclass(MMTalkerConfig, {"audio_encoder": spec, "audio_finetune": finetune}, "test config")


@pytest.mark.parametrize("spec, eye, finetune", [("whisper-tiny.en@3+1+2", True, 2), ("whisper-tiny.en@4+2", False, 3)])
def test_prefix_through_the_copied_blocks_is_the_encoders_output(audio, spec, eye, finetune):
    config = MMTalkerConfig(audio_encoder=spec, eye_pathway=eye, eye_layer=0, audio_finetune=finetune)
    encoder = model_audio_encoder(config)
    blocks = TunedBlocks(config, encoder.layer_dim)
    blocks.copy_from(encoder)
    assert bool(blocks.final_norm) == (max(read_states(config)) == 4)  # Whisper's last block: its final LayerNorm too
    with torch.no_grad():
        expected = encoder(audio)
        got = blocks(frozen_prefix(encoder, audio, prefix_states(config)))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_copy_into_puts_tuned_weights_into_the_encoder(audio):
    config = MMTalkerConfig(audio_encoder="whisper-tiny.en@3+1+2", eye_pathway=True, eye_layer=0, audio_finetune=2)
    encoder = model_audio_encoder(config)
    blocks = TunedBlocks(config, encoder.layer_dim)
    blocks.copy_from(encoder)
    prefix = frozen_prefix(encoder, audio, prefix_states(config))
    with torch.no_grad():
        before = encoder(audio)
        for p in blocks.parameters():
            p.add_(0.01 * torch.randn_like(p))
        tuned = blocks(prefix)
        blocks.copy_into(encoder)
        after = encoder(audio)
    torch.testing.assert_close(after, tuned, atol=1e-5, rtol=1e-5)
    D = encoder.layer_dim
    torch.testing.assert_close(after[..., D:2 * D], before[..., D:2 * D])  # block 1's output: frozen, unchanged
    assert (after[..., :D] - before[..., :D]).abs().max() > 1e-3  # block 3's: moved


def test_a_window_keeps_the_tuned_blocks_local_in_training_and_at_inference(audio):
    """model.audio_window W: each tuned block attends only to frames at most W away, in the trainer's blocks, in the
    encoder they are copied into and in streaming's incremental encoder; three tuned blocks see 3·W frames each side."""
    from mmtalker.audio.whisper_stream import IncrementalWhisper
    from mmtalker.train.config import build_dataclass

    W = 4
    config = MMTalkerConfig(audio_encoder="whisper-tiny.en@3+1+2", eye_pathway=True, eye_layer=0, audio_finetune=1,
                            audio_window=W)
    encoder = model_audio_encoder(config)
    blocks = TunedBlocks(config, encoder.layer_dim)
    blocks.copy_from(encoder)
    prefix = frozen_prefix(encoder, audio, prefix_states(config))
    with torch.no_grad():
        whole = encoder(audio)  # the pretrained encoder attends to the whole clip
        local = blocks(prefix)
        blocks.copy_into(encoder)
        after = encoder(audio)
        moved = prefix.clone()
        moved[:, 30] += 1.0
        change = (blocks(moved) - local).abs().amax(dim=-1)[0]  # (Ta,)
    assert (local - whole).abs().max() > 1e-3
    torch.testing.assert_close(after, local, atol=1e-5, rtol=1e-5)
    assert change[30] > 0 and change[: 30 - 3 * W].max() == 0 and change[30 + 3 * W + 1:].max() == 0
    assert change[30 - 3 * W] > 0 and change[30 + 3 * W] > 0
    stream = IncrementalWhisper(encoder)
    stream.push(audio[0].numpy())
    torch.testing.assert_close(stream.states(0, stream.num_frames), local[0], atol=2e-4, rtol=1e-4)
    with pytest.raises(MMTalkerError, match="audio_window"):
        build_dataclass(MMTalkerConfig, {"audio_encoder": "whisper-tiny.en@3+1+2", "audio_window": 8}, "test config")


def test_make_batch_crops_given_features_and_keeps_their_gradient():
    T, C = 30, 6
    clip = Clip(key="a", subject="s", subject_index=0, template=np.zeros((4, 3), np.float32), sequence=None,
                variants=[Variant(features=None, stretch=1.0, prefix=np.zeros((60, 2), np.float16), frames=T)])
    clip._disp = np.random.default_rng(0).normal(size=(T, 4, 3)).astype(np.float32)
    feats = torch.randn(T, C, requires_grad=True)
    batch = make_batch([clip], [Window(0, 5)], 10, features={(id(clip), 0): feats})
    torch.testing.assert_close(batch.audio[0], feats[5:15])
    batch.audio.sum().backward()
    assert feats.grad[5:15].eq(1).all() and feats.grad[:5].eq(0).all() and feats.grad[15:].eq(0).all()


FINETUNE = {**TINY, "model": {**TINY["model"], "audio_encoder": "whisper-tiny.en@2+1", "audio_finetune": 2},
            "optim": {**TINY["optim"], "epochs": 3, "audio_lr": 1e-3}}


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    data = write_fake_dataset(root / "data", clips_per_subject=3)
    config = write_config(root, FINETUNE)
    out = root / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--seed", "0"]) == 0
    return root, config, data, out


def test_training_moves_the_tuned_block_and_saves_it(tuned_run):
    from mmtalker.train.checkpoint import load_checkpoint

    model, config, _ = load_checkpoint(tuned_run[3] / "best")
    assert config.audio_finetune == 2 and model.audio_blocks is not None
    encoder = model_audio_encoder(config)
    while not hasattr(encoder, "mel"):  # down to the WhisperAudioEncoder inside the wrappers
        encoder = encoder.base
    pretrained = dict(encoder.encoder.layers[1].named_parameters())
    tuned = dict(model.audio_blocks.layers[0].named_parameters())
    assert max((tuned[k] - pretrained[k]).abs().max().item() for k in tuned) > 1e-4
    results = json.loads((tuned_run[3] / "results.json").read_text())
    assert np.isfinite(results["test"]["lve"])
    # the cache holds the frozen prefix at 50 Hz (the embeddings, for the eye pathway, and block 1's output), not features
    assert prefix_states(config) == [0, 1]
    cached = [np.load(p) for p in (tuned_run[0] / "cache").glob("*.npy")]
    assert cached and all(a.shape[1] == 2 * 384 and 71 <= a.shape[0] <= 89 for a in cached)  # 1.6 s clips, sped up by ≤ 10 %
    assert sum(a.shape[0] == 80 for a in cached) >= 6  # at least the clean audio of the 4 training and 2 validation clips


def test_inference_reads_the_tuned_blocks(tuned_run, audio):
    from mmtalker.inference.api import MMTalker as Animator

    animator = Animator.from_pretrained(tuned_run[3] / "best")
    model = animator.model
    plain = model_audio_encoder(model.config)
    with torch.no_grad():
        expected = _tuned_features(model, plain, audio)
        assert (plain(audio) - expected).abs().max() > 1e-2  # the pretrained encoder differs from the tuned one
        torch.testing.assert_close(animator.engine.encoder(audio), expected, atol=1e-5, rtol=1e-5)
    # streaming's incremental Whisper is built from that encoder: all audio in one push gives the tuned features
    from mmtalker.audio.whisper_stream import IncrementalWhisper

    stream = IncrementalWhisper(animator.engine.encoder)
    stream.push(audio[0].numpy())
    torch.testing.assert_close(stream.states(0, stream.num_frames), expected[0], atol=2e-4, rtol=1e-4)


def test_the_speed_benchmark_times_a_tuned_checkpoint_with_its_tuned_blocks(tuned_run, audio):
    """benchmarks/bench_models.py --checkpoint KIND=DIR runs the encoder the model was trained with."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_models

    model, encoder = bench_models.build("mmtalker", str(tuned_run[3] / "best"), 0, "cpu")
    plain = model_audio_encoder(model.config)
    with torch.no_grad():
        expected = _tuned_features(model, plain, audio)
        torch.testing.assert_close(encoder.eval()(audio), expected, atol=1e-5, rtol=1e-5)


def test_resume_continues_a_fine_tuning_run(tuned_run):
    root, config, data, out = tuned_run
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--resume", "--epochs", "4"]) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all(np.isfinite(r["val"]["loss"]) for r in history)


def test_a_peer_fine_tunes_too_and_its_inference_reads_the_tuned_blocks(tmp_path, audio):
    """VOCA with Whisper's block 2 tuned, through `mmtalker train`: the block moves, results are written, and
    the loaded model's encoder gives the tuned blocks' features."""
    from mmtalker.inference.api import MMTalker as Animator

    data = write_fake_dataset(tmp_path / "data", clips_per_subject=3)
    config = tmp_path / "voca_ft.yaml"
    config.write_text(yaml.safe_dump({
        "base": str(CONFIGS / "voca_synth.yaml"),
        "data": {"augment_variants": 1, "window_frames": 16, "cache_dir": str(tmp_path / "cache")},
        "model": {"audio_encoder": "whisper-tiny.en@2+1", "audio_finetune": 2},
        "optim": {"epochs": 2, "max_minutes": None, "batch_size": 4, "warmup_steps": 1, "audio_lr": 1e-3},
    }))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--seed", "0"]) == 0
    assert np.isfinite(json.loads((out / "results.json").read_text())["test"]["lve"])
    animator = Animator.from_pretrained(out / "best")
    model = animator.model
    assert model.config.audio_finetune == 2 and model.config.audio_dim == 2 * 384
    plain = model_audio_encoder(model.config)
    with torch.no_grad():
        expected = _tuned_features(model, plain, audio)
        assert (plain(audio) - expected).abs().max() > 1e-2
        torch.testing.assert_close(animator.engine.encoder(audio), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ model.audio_init: the tuned blocks' own start
def _blocks(finetune: int, init: str | None = None):
    config = MMTalkerConfig(audio_encoder="whisper-tiny.en@2+1", eye_pathway=False, audio_finetune=finetune, audio_init=init)
    encoder = model_audio_encoder(config)
    return config, encoder, TunedBlocks(config, encoder.layer_dim)


def test_saved_blocks_are_the_start_audio_init_names(tmp_path):
    from mmtalker.audio.finetune import save_blocks, start_blocks

    config, encoder, blocks = _blocks(1)
    blocks.copy_from(encoder)
    with torch.no_grad():
        blocks.layers[0].ffn[0].bias.add_(0.5)  # unlike Whisper's own
    save_blocks(blocks, tmp_path / "b.safetensors", "whisper-tiny.en")

    config2, _, fresh = _blocks(1, str(tmp_path / "b.safetensors"))
    start_blocks(fresh, encoder, config2)
    for (k, a), (_, b) in zip(blocks.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    _, _, plain = _blocks(1)
    start_blocks(plain, encoder, config)  # no audio_init: Whisper's own blocks
    assert float((plain.layers[0].ffn[0].bias - fresh.layers[0].ffn[0].bias).detach().abs().min()) == pytest.approx(0.5)


def test_a_bad_audio_init_is_refused_with_its_name(tmp_path):
    from safetensors.torch import save_file

    from mmtalker.audio.finetune import save_blocks, start_blocks
    from mmtalker.train.config import build_dataclass

    _, encoder, two_on = _blocks(2)
    two_on.copy_from(encoder)
    save_blocks(two_on, tmp_path / "two.safetensors", "whisper-tiny.en")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "mmtalker-checkpoint"})
    one_on = _blocks(1)[2]
    one_on.copy_from(encoder)
    with torch.no_grad():
        one_on.layers[0].ffn[0].bias[3] = float("nan")  # a teaching run that diverged
    save_blocks(one_on, tmp_path / "nan.safetensors", "whisper-tiny.en")
    cases = [("missing.safetensors", "does not exist"), ("junk.safetensors", "not a readable safetensors"),
             ("other.safetensors", "holds no tuned Whisper blocks"), ("two.safetensors", "blocks 2-2 .*tunes .*blocks 1-2"),
             ("nan.safetensors", "NaN or infinite")]
    for name, match in cases:
        config, _, blocks = _blocks(1, str(tmp_path / name))
        with pytest.raises(MMTalkerError, match=match) as err:
            start_blocks(blocks, encoder, config)
        assert name in str(err.value)
    with pytest.raises(MMTalkerError, match="audio_init.*needs model.audio_finetune"):
        build_dataclass(MMTalkerConfig, {"audio_encoder": "whisper-tiny.en@2+1", "audio_init": "b.safetensors"}, "test config")


def test_training_starts_the_tuned_blocks_from_audio_init(tuned_run, tmp_path):
    """`mmtalker train --set model.audio_init=FILE`: the run's tuned blocks start from the file, not from Whisper."""
    from mmtalker.audio.finetune import save_blocks
    from mmtalker.train.checkpoint import load_checkpoint

    root, config, data, _ = tuned_run
    model, model_config, _ = load_checkpoint(tuned_run[3] / "best")
    blocks = TunedBlocks(model_config, 384)
    blocks.copy_from(model_audio_encoder(model_config))
    with torch.no_grad():
        blocks.layers[0].ffn[0].bias.add_(2.0)
    save_blocks(blocks, tmp_path / "start.safetensors", "whisper-tiny.en")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--seed", "0",
                 "--set", f"model.audio_init={tmp_path / 'start.safetensors'}"]) == 0
    started, _, _ = load_checkpoint(out / "best")
    moved = float((started.audio_blocks.layers[0].ffn[0].bias - blocks.layers[0].ffn[0].bias).detach().abs().mean())
    plain = float((model.audio_blocks.layers[0].ffn[0].bias - blocks.layers[0].ffn[0].bias).detach().abs().mean())
    assert moved < 0.2 < plain  # trained a little from the file's weights; the plain run is 2.0 away from them
