"""The synthetic benchmark end to end on the tiny preset: the physics of the written motion, its error floor,
the files and their determinism, and the ``mmtalker data`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError

speech = pytest.importorskip("mmtalker.synth.speech")
if "espeak" not in speech.available_engines():
    pytest.skip("the optional speech engines are not installed (pip install '.[synth]')", allow_module_level=True)

from mmtalker.cli import main  # noqa: E402
from mmtalker.data.dataset import open_dataset  # noqa: E402
from mmtalker.eval.metrics import MetricAccumulator, eve, lve  # noqa: E402
from mmtalker.synth import eyes  # noqa: E402
from mmtalker.synth.generate import LANDMARKS_REGION, SPLITS, generate, load_preset, make_plan, split_of  # noqa: E402
from mmtalker.synth.rig import FaceRig  # noqa: E402
from mmtalker.synth.visemes import kind_of  # noqa: E402

pytestmark = pytest.mark.synth

SEED = 5
FPS = 30.0
CLOSED_GAP = 0.001  # m: lips shut (sensor noise is 0.15 mm per coordinate)
OPEN_GAP = 0.004  # m: mouth visibly open


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(out, preset="tiny", seed=SEED, fps=FPS, workers=2)
    return out


@pytest.fixture(scope="module")
def ds(tiny):
    return open_dataset(tiny)


@pytest.fixture(scope="module")
def rigs(ds, tiny):
    faces = ds.topology().faces
    landmarks = np.loadtxt(tiny / "regions" / f"{LANDMARKS_REGION}.txt", delimiter=",", dtype=np.int64)
    return {s: FaceRig(ds.template(s), faces, landmarks) for s in ds.subjects}


def centre_frame(p: dict, num_frames: int) -> int:
    return min(num_frames - 1, int(round(0.5 * (p["start"] + p["end"]) * FPS)))


def test_layout_splits_and_manifest(ds, tiny):
    sizes = load_preset("tiny")
    m = ds.manifest
    assert m.fps == FPS and set(m.splits) == set(SPLITS)
    seen = sizes["seen_subjects"]
    per_split = {s: ds.sequences(s) for s in SPLITS}
    assert len(per_split["train"]) == seen * sizes["sentences"]["train"]
    assert len(per_split["val"]) == seen * sizes["sentences"]["val"]
    assert len(per_split["test"]) == seen * sizes["sentences"]["test"]
    assert len(per_split["test_unseen_subjects"]) == sizes["unseen_subjects"] * sizes["sentences"]["test"]
    subjects = {s: {q.subject for q in per_split[s]} for s in SPLITS}
    sentences = {s: {q.sentence for q in per_split[s]} for s in SPLITS}
    assert not subjects["test_unseen_subjects"] & subjects["train"]
    assert not sentences["train"] & sentences["val"] and not sentences["train"] & sentences["test"]
    assert sentences["test_unseen_subjects"] == sentences["test"]
    for region in ("lips", "eye_region", "upper_face", "forehead"):
        assert ds.region(region).size > 10
    landmarks = np.loadtxt(tiny / "regions" / f"{LANDMARKS_REGION}.txt", delimiter=",", dtype=np.int64)
    assert landmarks.shape == (68,) and landmarks.max() < m.num_vertices
    for name, info in m.extra["subjects"].items():
        assert set(info["style"]) >= {"amplitude", "timing_offset", "anticipation", "smoothness"}
    for q in per_split["train"]:
        phones = q.alignment()
        assert phones[0]["start"] == 0.0 and phones[0]["symbol"] == "_" and phones[-1]["symbol"] == "_"
        assert all(abs(a["end"] - b["start"]) < 1e-9 for a, b in zip(phones, phones[1:]))


def test_audio_and_motion_durations_agree_within_a_frame(ds):
    for q in ds.sequences():
        audio, verts = q.audio(), q.vertices()
        assert abs(audio.size / SAMPLE_RATE - verts.shape[0] / FPS) <= 1.0 / FPS, q.key
        assert q.oracle().shape == verts.shape
        assert abs(q.alignment()[-1]["end"] - audio.size / SAMPLE_RATE) < 1e-3


def test_lips_close_on_bilabials_and_open_on_open_vowels(ds, rigs):
    closed = opened = 0
    for q in ds.sequences():
        verts, phones = q.vertices(), q.alignment()
        gap = rigs[q.subject].inner_lip_gap(verts)
        kinds_at: dict[int, set] = {}
        for p in phones:
            kinds_at.setdefault(centre_frame(p, len(gap)), set()).add(kind_of(p["symbol"]))
        for p in phones:
            k = centre_frame(p, len(gap))
            kind = kind_of(p["symbol"])
            # phones shorter than a frame: one frame shows one shape, and a closure beats an open vowel
            if kind == "open_vowel" and kinds_at[k] & {"bilabial", "labiodental"}:
                continue
            if {"bilabial", "labiodental"} <= kinds_at[k]:
                continue
            if kind == "bilabial":
                assert gap[k] < CLOSED_GAP, f"{q.key}: /{p['symbol']}/ at {p['start']:.3f}s, lip gap {gap[k] * 1e3:.2f} mm"
                closed += 1
            elif kind == "open_vowel":
                assert gap[k] > OPEN_GAP, f"{q.key}: /{p['symbol']}/ at {p['start']:.3f}s, lip gap {gap[k] * 1e3:.2f} mm"
                opened += 1
        # silence at both ends: the mouth at rest, not open
        assert gap[0] < OPEN_GAP and gap[-1] < OPEN_GAP
    assert closed >= 5 and opened >= 5  # the checks did run


def test_blink_frames_move_the_eyelids(ds, rigs):
    blinks = ds.manifest.extra["blinks"]
    styles = {s: i["style"] for s, i in ds.manifest.extra["subjects"].items()}
    seen = 0
    for q in ds.sequences():
        lids = rigs[q.subject].eyelid_gap(q.vertices()).mean(axis=1)  # (T,)
        rest = float(rigs[q.subject].eyelid_gap(ds.template(q.subject)[None]).mean())
        duration = styles[q.subject]["blink_duration"]
        t = np.arange(len(lids)) / FPS
        for start in blinks[q.key]:
            k = int(round((start + eyes.CLOSE_SHARE * duration) * FPS))
            if k < len(lids):
                assert lids[k] < 0.4 * rest, f"{q.key}: blink at {start:.2f}s leaves the lids {lids[k] / rest:.0%} open"
                seen += 1
        far = np.all(np.abs(t[:, None] - (np.array(blinks[q.key]) + duration / 2)[None, :]) > duration, axis=1) \
            if blinks[q.key] else np.ones(len(t), bool)
        assert np.all(lids[far] > 0.8 * rest), q.key
    assert seen >= 1


def test_oracle_floor_is_positive_below_baselines_and_recorded(ds):
    floor = ds.manifest.extra["oracle_floor"]
    static = ds.manifest.extra["static_baseline"]
    lips, eye, upper = ds.region("lips"), ds.region("eye_region"), ds.region("upper_face")
    for split in ("test", "test_unseen_subjects"):
        acc = MetricAccumulator(lip_idx=lips, eye_idx=eye, upper_idx=upper)
        for q in ds.sequences(split):
            truth, oracle = q.vertices(), q.oracle()
            acc.add(oracle, truth, ds.template(q.subject))
            # a late oracle (3 frames) is worse: the floor rewards timing
            late = np.concatenate([oracle[:1].repeat(3, 0), oracle[:-3]])
            assert lve(late, truth, lips) > lve(oracle, truth, lips), q.key
        got = acc.result()
        for key in ("lve", "eve", "mve", "fdd"):
            assert_close(floor[split][key], got[key], rtol=1e-5, atol=1e-12, what=f"{split} {key}")
        assert floor[split]["units"]["lve"] == "m^2"
        for key in ("lve", "eve", "mve"):
            assert 0 < floor[split][key] < static[split][key], (split, key)
    noise = ds.manifest.extra["noise_sd"]["value"]
    assert floor["test"]["mve"] > noise  # at least the noise's mean norm (≈ 1.6 sd) is irreducible


def test_noise_on_the_oracle_only_hurts(ds):
    """The oracle is the best guess: the same guess with noise added scores worse on lips and eyes."""
    q = ds.sequences("test")[0]
    truth, oracle = q.vertices(), q.oracle()
    noisy = oracle + 0.0005 * np.random.default_rng(0).standard_normal(oracle.shape).astype(np.float32)
    lips, eye = ds.region("lips"), ds.region("eye_region")
    assert 0 < lve(oracle, truth, lips) < lve(noisy, truth, lips)
    assert 0 < eve(oracle, truth, eye) < eve(noisy, truth, eye)


def test_same_seed_same_bytes(tiny, tmp_path):
    again = tmp_path / "again"
    generate(again, preset="tiny", seed=SEED, fps=FPS, workers=1)
    files = sorted(p.relative_to(tiny) for p in tiny.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (tiny / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert len(files) > 20


def test_cli_synth_refuses_a_non_empty_folder_and_preview(tiny, tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tiny), "--preset", "tiny", "--quiet"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--preset", "huge", "--quiet"]) == 1
    png = tmp_path / "sheet.png"
    try:
        code = main(["data", "preview", str(tiny), "--out", str(png), "--frames", "6"])
    except MMTalkerError as exc:  # pragma: no cover - machines without EGL
        pytest.skip(f"no offscreen rendering here: {exc}")
    if code != 0 and "EGL" in capsys.readouterr().err:
        pytest.skip("no offscreen rendering here")
    assert code == 0 and png.stat().st_size > 10_000
    from PIL import Image

    assert Image.open(png).size[0] >= 3 * 200
    assert main(["data", "preview", str(tiny), "--out", str(png)]) == 1  # no overwrite without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_blinks_in_manifest_are_json(tiny):
    data = json.loads((tiny / "manifest.json").read_text())
    assert set(data["extra"]["blinks"]) == {p.stem for p in (tiny / "vertices_npy").glob("*.npy")}


def test_default_plan_is_vocaset_like():
    sizes = load_preset("default")
    plan = make_plan(sizes, seed=0)
    assert len(plan.seen) + len(plan.unseen) == 8
    assert sum(len(v) for v in plan.sentences.values()) == 40
    texts = {split: {t for _, _, t in items} for split, items in plan.sentences.items()}
    assert not texts["train"] & texts["test"] and not texts["val"] & texts["test"] and not texts["train"] & texts["val"]
    counts = {}
    for job in plan.jobs:
        counts[split_of(job, plan)] = counts.get(split_of(job, plan), 0) + 1
    seen, n = len(plan.seen), sizes["sentences"]
    assert counts == {"train": seen * n["train"], "val": seen * n["val"], "test": seen * n["test"],
                      "test_unseen_subjects": len(plan.unseen) * n["test"]}
    assert len({j.key for j in plan.jobs}) == len(plan.jobs)
    with pytest.raises(MMTalkerError, match="no such dataset preset"):
        load_preset("huge")


def test_preview_picks_a_closure_an_opening_and_a_blink():
    from mmtalker.synth.preview import choose_frames

    phones = [{"symbol": "_", "start": 0.0, "end": 0.3}, {"symbol": "m", "start": 0.3, "end": 0.4},
              {"symbol": "ɑ", "start": 0.4, "end": 0.6}, {"symbol": "_", "start": 0.6, "end": 1.0}]
    lids = np.ones(30)
    lids[25] = 0.1
    picks = dict(choose_frames(phones, lids, 30.0, 8))
    assert picks[round(0.35 * 30)] == "lips closed" and picks[round(0.5 * 30)] == "jaw open" and picks[25] == "blink"
    assert len(picks) == 8 and min(picks) == 0 and max(picks) == 29
    assert len(choose_frames(phones, np.ones(4), 30.0, 8)) == 4  # never more frames than the clip has


def test_large_plan_has_four_times_the_training_sentences_and_disjoint_splits():
    sizes = load_preset("large")
    plan = make_plan(sizes, seed=0)
    texts = {split: {t for _, _, t in items} for split, items in plan.sentences.items()}
    assert {k: len(v) for k, v in texts.items()} == {"train": 128, "val": 4, "test": 4}
    assert not texts["train"] & texts["test"] and not texts["val"] & texts["test"] and not texts["train"] & texts["val"]
    assert len(plan.jobs) == 6 * (128 + 4 + 4) + 2 * 4 == len({j.key for j in plan.jobs})


def test_long_audio_benchmark_rebuilds_the_generators_speakers(ds):
    """benchmarks/long_audio_accuracy.py: the speakers rebuilt from the manifest have the dataset's templates, and
    a long clip is the generator's own motion (a seen speaker saying test sentences in one clip, sound and motion
    of one length, the oracle below the truth's error against a still face)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from long_audio_accuracy import make_long_clips

    clips, texts = make_long_clips(ds, None, 2)
    assert len(texts) == 2 and all(c.fps == FPS for c in clips)
    assert [c.subject for c in clips] == list(ds.manifest.splits["train"].subjects)  # every seen speaker
    for c in clips:
        assert abs(len(c.samples) / SAMPLE_RATE * FPS - c.num_frames) <= 1.0
        template = ds.template(c.subject)
        assert c.truth.shape == c.oracle.shape == (c.num_frames, *template.shape)
        still = np.broadcast_to(template, c.truth.shape)
        lips = ds.region("lips")
        assert lve(c.oracle, c.truth, lips) < 0.5 * lve(still, c.truth, lips)
    with pytest.raises(MMTalkerError, match="has no speaker nobody"):
        make_long_clips(ds, ["nobody"], 1)


def test_wide_test_plan_is_default_with_five_times_the_test_sentences():
    """Models trained on `default` are scored on `wide-test`: the same train and val jobs (so the same bytes),
    default's test jobs first among its test jobs, and no test sentence among the training ones."""
    sizes = {name: load_preset(name) for name in ("default", "wide-test")}
    assert {k: v for k, v in sizes["wide-test"].items() if k != "sentences"} == {
        k: v for k, v in sizes["default"].items() if k != "sentences"}, "wide-test must follow default's other sizes"
    assert {**sizes["wide-test"]["sentences"], "test": 4} == sizes["default"]["sentences"]
    default, wide = make_plan(sizes["default"], seed=0), make_plan(sizes["wide-test"], seed=0)
    for split in ("train", "val"):
        assert wide.sentences[split] == default.sentences[split] and wide.splits[split] == default.splits[split]
    assert wide.sentences["test"][:4] == default.sentences["test"] and len(wide.sentences["test"]) == 20
    train = {t for _, _, t in wide.sentences["train"]}
    assert not train & {t for _, _, t in wide.sentences["test"]}
    assert set(default.jobs) <= set(wide.jobs) and len(wide.jobs) == 6 * (32 + 4 + 20) + 2 * 20
    assert wide.splits["test_unseen_subjects"]["subjects"] == default.splits["test_unseen_subjects"]["subjects"]


def test_phonetic_ceiling_runs_on_the_tiny_preset(tiny, capsys):
    """benchmarks/phonetic_ceiling.py end to end (two epochs): one row per scored split, its settings in the header."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from phonetic_ceiling import main as ceiling

    assert ceiling(["--data", str(tiny), "--epochs", "2", "--threads", "1", "--components", "8"]) == 0
    out = capsys.readouterr().out
    assert "(displacement loss, cosine rate, dropout 0.2)" in out
    rows = [line for line in out.splitlines() if line.startswith("| test") or line.startswith("| train")]
    assert [r.split("|")[1].strip() for r in rows] == ["train", "test", "test_unseen_subjects"]
    assert all(float(r.split("|")[2]) > 0 for r in rows)


def test_phonetic_ceiling_hears_the_phones_from_speech(tiny, tmp_path, capsys):
    """The same script fed speech instead of phones (`--input speech`, every option it has), and the cascade
    (`--input heard`): a second network names each frame's phones from the speech, its accuracy printed per split."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from phonetic_ceiling import main as ceiling

    common = ["--data", str(tiny), "--epochs", "1", "--threads", "1", "--components", "8", "--width", "16",
              "--cache-dir", str(tmp_path / "cache")]
    assert ceiling([*common, "--input", "speech", "--variants", "1", "--clip-norm", "--bottleneck", "4",
                    "--phone-aux", "0.01", "--input-dropout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "speech-fed (whisper-tiny.en@3+1+2) network" in out
    rows = [line for line in out.splitlines() if line.startswith("| test") or line.startswith("| train")]
    assert [r.split("|")[1].strip() for r in rows] == ["train", "test", "test_unseen_subjects"]

    assert ceiling([*common, "--input", "speech", "--phone-bottleneck", "--phone-aux", "1"]) == 0
    assert "| test |" in capsys.readouterr().out
    assert ceiling([*common, "--input", "speech", "--phone-bottleneck"]) == 2  # no naming loss: refused
    assert "--phone-aux" in capsys.readouterr().err

    assert ceiling([*common, "--input", "speech", "--units", "4"]) == 0  # discrete units instead of the features
    out = capsys.readouterr().out
    assert "speech-fed (whisper-tiny.en@3+1+2, as 4 units) network" in out and "| test |" in out
    assert ceiling([*common, "--input", "phones", "--units", "4"]) == 2
    assert "--units" in capsys.readouterr().err

    assert ceiling([*common, "--input", "heard", "--variants", "1"]) == 0
    out = capsys.readouterr().out
    heard = [line for line in out.splitlines() if line.startswith("phones heard on ")]
    assert [h.split()[3].rstrip(":") for h in heard] == ["train", "test", "test_unseen_subjects"]
    assert all(0.0 <= float(h.split()[4].rstrip("%")) <= 100.0 for h in heard)
    rows = [line for line in out.splitlines() if line.startswith("| test")]
    assert len(rows) == 2 and all(float(r.split("|")[2]) > 0 for r in rows)


def test_hearing_pretrain_saves_blocks_that_training_starts_from(tiny, tmp_path, capsys):
    """benchmarks/hearing_pretrain.py: Whisper's tuned blocks taught to name the tiny set's phones (one epoch), the
    share named right printed per split, the blocks saved for model.audio_init; an existing file is kept."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from hearing_pretrain import main as pretrain

    from mmtalker.audio.encoders import model_audio_encoder
    from mmtalker.audio.finetune import TunedBlocks, start_blocks
    from mmtalker.train.config import load_config

    out = tmp_path / "blocks.safetensors"
    assert pretrain(["--data", str(tiny), "--eval", str(tiny), "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    scores = printed.split("frames named right: ")[1].splitlines()[0]
    assert [part.split()[0] for part in scores.split(", ")] == ["val", "test", "test_unseen_subjects"]
    assert all(0.0 <= float(part.split()[1].rstrip("%")) <= 100.0 for part in scores.split(", "))
    with pytest.raises(MMTalkerError, match="already exists"):
        pretrain(["--data", str(tiny), "--epochs", "1", "--out", str(out)])

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "mmtalker_synth.yaml",
                         {"model": {"audio_init": str(out)}}).model
    encoder = model_audio_encoder(config)
    blocks, whisper = TunedBlocks(config, encoder.layer_dim), TunedBlocks(config, encoder.layer_dim)
    start_blocks(blocks, encoder, config)
    whisper.copy_from(encoder)
    assert (blocks.first, blocks.last) == (1, 4)
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(blocks.parameters(), whisper.parameters()))
    assert 0 < moved < 1  # one epoch at 1e-4 moved Whisper's blocks, a little
    assert torch.equal(blocks.final_norm, whisper.final_norm)


def test_phonetic_ceiling_units_kmeans_finds_separate_clusters():
    """`--units`' k-means on three well-separated blobs: one centre per blob, at its mean; the posteriors
    put each point on its own blob's centre and sum to 1."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from phonetic_ceiling import kmeans, unit_posteriors

    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.cat([m + 0.1 * torch.randn(50, 2, generator=g) for m in means])
    centres = kmeans(z, 3, seed=1)
    order = torch.cdist(means, centres).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    for i in range(3):
        assert torch.allclose(centres[order[i]], z[50 * i: 50 * (i + 1)].mean(0), atol=1e-5)
    post = unit_posteriors(z, centres, temperature=1.0)
    assert torch.allclose(post.sum(1), torch.ones(len(z)))
    assert (post.argmax(1) == order.repeat_interleave(50)).all()
    assert post.max(1).values.min() > 0.99
