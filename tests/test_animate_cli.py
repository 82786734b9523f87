"""`mmtalker animate` from the command line on a tiny random checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close
from mmtalker.audio.io import SAMPLE_RATE, load_audio
from mmtalker.cli import main
from test_api import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "best", seed=6)


def test_the_21s_fixture_to_npz_and_npy(tmp_path, fixtures_dir, checkpoint, capsys):
    from mmtalker.inference.api import MMTalker

    wav = fixtures_dir / "audio" / "selftalk_test_16k_21s.wav"
    out = tmp_path / "anim.npz"
    assert main(["animate", "--checkpoint", str(checkpoint), "--audio", str(wav), "--out", str(out), "--style", "bob"]) == 0
    data = np.load(out)
    T = round(len(load_audio(wav)) / SAMPLE_RATE * 25.0)
    assert data["vertices"].shape == (T, 64, 3) and float(data["fps"]) == 25.0 and data["faces"].shape[1] == 3
    assert "wrote" in capsys.readouterr().out
    expected = MMTalker.from_pretrained(checkpoint).animate(wav, style="bob")
    assert_close(data["vertices"], expected, atol=1e-6, what="cli vs api")
    npy = tmp_path / "anim.npy"
    assert main(["animate", "--checkpoint", str(checkpoint), "--audio", str(wav), "--out", str(npy), "--style", "bob"]) == 0
    assert_close(np.load(npy), expected, atol=1e-6, what="npy output")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_refuses_to_overwrite_and_lists_styles(tmp_path, fixtures_dir, checkpoint, capsys):
    wav = fixtures_dir / "audio" / "voca_test_sentence_22k.wav"
    out = tmp_path / "a.npy"
    out.write_bytes(b"keep me")
    args = ["animate", "--checkpoint", str(checkpoint), "--audio", str(wav), "--out", str(out)]
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(args + ["--overwrite"]) == 0 and np.load(out).shape[1:] == (64, 3)
    assert main(args + ["--overwrite", "--style", "carol"]) == 1
    assert "alice, bob" in capsys.readouterr().err
    assert main(["animate", "--checkpoint", str(tmp_path), "--audio", str(wav), "--out", str(tmp_path / "b.npy")]) == 1
    assert "checkpoint" in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "a.txt")]) == 1


def test_video_with_the_speech(tmp_path, fixtures_dir, checkpoint):
    from mmtalker.render.video import video_info

    wav = fixtures_dir / "audio" / "voca_test_sentence_22k.wav"
    out, video = tmp_path / "a.npz", tmp_path / "a.mp4"
    assert main(["animate", "--checkpoint", str(checkpoint), "--audio", str(wav), "--out", str(out),
                 "--video", str(video), "--size", "64"]) == 0
    frames = np.load(out)["vertices"].shape[0]
    info = video_info(video)
    assert info["frames"] == frames and info["fps"] == pytest.approx(25.0) and info["size"] == (64, 64)
    assert info["audio_codec"] == "aac" and info["audio_duration"] == pytest.approx(frames / 25.0, abs=0.1)


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["animate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--checkpoint" in text and "--template" in text and "any length" in text


def test_npy_block_writer_round_trip_and_incomplete_output(tmp_path):
    from mmtalker.errors import MMTalkerError
    from mmtalker.inference.npy_writer import NpyBlockWriter

    data = np.random.default_rng(0).standard_normal((7, 5, 3)).astype(np.float32)
    writer = NpyBlockWriter(tmp_path / "a.npy", data.shape)
    for s in (0, 3, 4):
        writer.write(data[s : {0: 3, 3: 4, 4: 7}[s]])
    assert_close(np.load(writer.close()), data, atol=0, rtol=0, what="npy written in blocks")
    short = NpyBlockWriter(tmp_path / "b.npy", data.shape)
    short.write(data[:2])
    with pytest.raises(MMTalkerError, match="only 2 of 7"):
        short.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]  # nothing half-written left behind
