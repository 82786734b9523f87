"""Bad inputs to the Python API end in one MMTalkerError naming the argument and the problem (never a numpy,
torch or pathlib error from deep inside): audio chunks, stream options, out=, sample_rate, window_s, num_frames,
face=, devices, checkpoint paths and non-finite templates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtalker.errors import MMTalkerError
from mmtalker.inference.api import MMTalker
from mmtalker.mesh.io import Mesh
from test_api import speechlike, tiny_checkpoint, tiny_model


@pytest.fixture(scope="module")
def talker():
    return MMTalker.from_model(tiny_model())


@pytest.mark.parametrize("chunk, message", [
    ((np.ones(1600) * 20000).astype(np.int16), r"audio chunk: must be a 1-D float array of samples, got int16 \(1600,\) "
                                               r"\(scale integer PCM"),
    (np.zeros((2, 3200)), r"audio chunk: must be a 1-D float array of samples, got float64 \(2, 3200\)"),
    (b"\x00\x01", "audio chunk: must be a 1-D float array of samples, got bytes"),
    ("abc", "audio chunk: must be a 1-D float array of samples, got str"),
    (np.full(100, np.nan, np.float32), "audio chunk: contains NaN or infinite samples"),
])
def test_push_refuses_what_animate_refuses(talker, chunk, message):
    with pytest.raises(MMTalkerError, match=message):
        talker.stream().push(chunk)


def test_push_takes_float_arrays_and_tensors(talker):
    audio = speechlike(0.6)
    anim = talker.stream()
    frames = [anim.push(audio[:4800]), anim.push(torch.from_numpy(audio[4800:]).requires_grad_()), anim.flush()]
    assert sum(len(f) for f in frames) == talker.num_frames_for(len(audio))


def test_stream_options_must_be_numbers(talker):
    with pytest.raises(MMTalkerError, match="streaming: context_s must be a number of seconds, got str '2'"):
        talker.stream(context_s="2")
    with pytest.raises(MMTalkerError, match="stream: has no option contex_s"):
        talker.stream(contex_s=2.0)


def test_out_must_fit(talker):
    audio = speechlike(0.5)
    shape = (talker.num_frames_for(len(audio)), talker.num_vertices, 3)
    with pytest.raises(MMTalkerError, match=r"out: must be a float32 array of shape .*, got int16"):
        talker.animate(audio, out=np.zeros(shape, np.int16))
    with pytest.raises(MMTalkerError, match=r"out: must be a float32 array of shape .*, got float32 \(3,"):
        talker.animate(audio, out=np.zeros((3, *shape[1:]), np.float32))
    read_only = np.zeros(shape, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(MMTalkerError, match="out: is read-only"):
        talker.animate(audio, out=read_only)
    out = np.zeros(shape, np.float32)
    assert talker.animate(audio, out=out) is out and np.abs(out).max() > 0


@pytest.mark.parametrize("kw, message", [
    ({"sample_rate": 0}, "sample_rate: must be a positive number of samples per second, got int 0"),
    ({"sample_rate": "16000"}, "sample_rate: must be a positive number of samples per second, got str '16000'"),
    ({"window_s": float("nan")}, "window_s: must be a finite number, got nan"),
    ({"overlap_s": "3"}, "overlap_s: must be a number, got str '3'"),
    ({"num_frames": 0}, "num_frames: must be at least 1, got 0"),
    ({"num_frames": 2.5}, "num_frames: must be a whole number of frames, got float 2.5"),
    ({"num_frames": 10**9}, r"num_frames: 1000000000 is far more than the audio gives \(12 frames"),
])
def test_bad_animate_arguments(talker, kw, message):
    with pytest.raises(MMTalkerError, match=message):
        talker.animate(speechlike(0.5), **kw)


def test_num_frames_may_pad_within_bounds(talker):
    assert talker.animate(speechlike(0.5), num_frames=40).shape[0] == 40  # 12 frames of audio, the rest silence


def test_iter_animate_checks_face_when_called(talker):
    with pytest.raises(MMTalkerError, match=r"face: must be what prepare_face\(\) returns, got str"):
        talker.iter_animate(speechlike(0.5), face="x")


@pytest.mark.parametrize("entry", ["animate", "iter_animate"])
def test_a_prepared_face_with_a_style_or_template_beside_it_is_refused(talker, entry):
    """``face`` replaces style and template: given both, one would be ignored without a word."""
    face = talker.prepare_face()
    for extra in ({"style": talker.styles[0]}, {"template": talker.template_mesh}):
        with pytest.raises(MMTalkerError, match="face: replaces style and template, which were given too"):
            getattr(talker, entry)(speechlike(0.5), face=face, **extra)
    assert talker.animate(speechlike(0.5), face=face).shape[1] == talker.num_vertices


def test_audio_tensor_is_accepted(talker):
    audio = speechlike(0.5)
    expected = talker.animate(audio)
    assert np.array_equal(talker.animate(torch.from_numpy(audio).requires_grad_()), expected)


@pytest.mark.parametrize("device, message", [
    ("tpu", "device 'tpu': is not one of cpu, cuda, cuda:N, auto"),
    (5, "device: expected a string .*, got int 5"),
    (f"cuda:{torch.cuda.device_count()}", "is not available on this machine"),
])
def test_load_checkpoint_checks_the_device(tmp_path, device, message):
    from mmtalker.train.checkpoint import load_checkpoint

    tiny_checkpoint(tmp_path / "ck")
    with pytest.raises(MMTalkerError, match=message):
        load_checkpoint(tmp_path / "ck", device=device)


@pytest.mark.parametrize("bad", [None, 3, ["ck"], b"ck"])
def test_from_pretrained_wants_a_path(bad):
    with pytest.raises(MMTalkerError, match=f"checkpoint: expected a folder path, got {type(bad).__name__}"):
        MMTalker.from_pretrained(bad)


def test_non_finite_templates_say_so(talker):
    verts = talker.template_mesh.vertices.copy()
    verts[0] = np.nan
    with pytest.raises(MMTalkerError, match="template array: holds NaN or infinite vertex positions"):
        talker.animate(speechlike(0.5), template=verts)
    with pytest.raises(MMTalkerError, match="template: has NaN or infinite vertex positions"):
        talker.animate(speechlike(0.5), template=Mesh(vertices=verts, faces=talker.template_mesh.faces))
