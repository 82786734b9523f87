"""mmtalker.audio.io: every format and sample type in, 16 kHz mono float32 out; clear errors otherwise."""

from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_close
from mmtalker.audio.io import SAMPLE_RATE, AudioInfo, audio_info, load_audio, resample_audio, save_wav
from mmtalker.errors import MMTalkerError

FIXTURE_WAVS = [
    "voca_test_sentence_22k.wav",
    "faceformer_test_44k.wav",
    "codetalker_man_stereo_44k.wav",
    "selftalk_test_16k_21s.wav",
]


def _tone(rate: int, seconds: float = 0.5, peak: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (peak * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("name", FIXTURE_WAVS)
def test_fixture_duration_and_peak(fixtures_dir, name):
    path = fixtures_dir / "audio" / name
    raw, rate = sf.read(path, dtype="float32", always_2d=True)
    truth_seconds = raw.shape[0] / rate
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - truth_seconds * SAMPLE_RATE) <= 1.0
    # Peak of the mean downmix at the source rate; resampling low-passes, so a small tolerance.
    ref_peak = np.abs(raw.mean(axis=1)).max()
    assert abs(np.abs(out).max() - ref_peak) <= 0.02 * ref_peak


@pytest.mark.parametrize("name", FIXTURE_WAVS)
def test_fixture_info(fixtures_dir, name):
    path = fixtures_dir / "audio" / name
    info = audio_info(path)
    assert isinstance(info, AudioInfo)
    ref = sf.info(str(path))
    assert (info.sample_rate, info.channels, info.frames) == (ref.samplerate, ref.channels, ref.frames)
    assert info.duration == pytest.approx(ref.frames / ref.samplerate)
    assert info.format == "WAV" and info.subtype == "PCM_16"


def test_stereo_downmix_is_mean(tmp_path):
    left = _tone(SAMPLE_RATE, peak=0.8)
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    out = load_audio(path)  # same rate: no resampling, so exact
    assert_close(out, (left + right) / 2, atol=1e-7, what="downmix")


def test_native_rate_is_exact(tmp_path):
    x = _tone(SAMPLE_RATE, peak=0.3)
    path = tmp_path / "a.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    assert_close(load_audio(path), x, atol=0, rtol=0, what="samples")


# (format, subtype, suffix, peak tolerance): lossy codecs change the waveform, the peak only a little.
ROUND_TRIPS = [
    ("WAV", "PCM_U8", "wav", 0.02),
    ("WAV", "PCM_16", "wav", 0.005),
    ("WAV", "PCM_24", "wav", 0.005),
    ("WAV", "PCM_32", "wav", 0.005),
    ("WAV", "FLOAT", "wav", 0.005),
    ("WAV", "DOUBLE", "wav", 0.005),
    ("FLAC", "PCM_16", "flac", 0.005),
    ("FLAC", "PCM_24", "flac", 0.005),
    ("OGG", "VORBIS", "ogg", 0.08),
    ("MP3", "MPEG_LAYER_III", "mp3", 0.08),
]


@pytest.mark.parametrize("rate", [22050, 44100])
@pytest.mark.parametrize("fmt,subtype,suffix,tol", ROUND_TRIPS)
def test_formats_read_back(tmp_path, fmt, subtype, suffix, tol, rate):
    x = _tone(rate, seconds=0.5, peak=0.5)
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, np.stack([x, x], axis=1), rate, format=fmt, subtype=subtype)
    info = audio_info(path)
    assert info.format == fmt and info.subtype == subtype and info.channels == 2
    out = load_audio(path)
    expected_len = info.frames * SAMPLE_RATE / rate
    assert abs(len(out) - expected_len) <= 1.0
    assert abs(np.abs(out).max() - 0.5) <= tol
    if fmt in ("WAV", "FLAC"):  # lossless: compare the waveform, apart from the resampler's edges
        ref = resample_audio(x, rate, SAMPLE_RATE)
        assert_close(out[200:-200], ref[200:-200], atol=2.5 * 2.0 ** -7 if subtype == "PCM_U8" else 1e-3, what=subtype)


def test_other_sample_rate_requested(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(44100, seconds=1.0), 44100)
    assert len(load_audio(path, sample_rate=22050)) == 22050


def test_resample_matches_scipy_reference():
    from scipy.signal import resample_poly

    x = _tone(22050, seconds=1.0, freq=300.0) + _tone(22050, seconds=1.0, peak=0.2, freq=2000.0)
    ours = resample_audio(x, 22050, 16000)
    ref = resample_poly(x.astype(np.float64), 320, 441)
    assert len(ours) == len(ref)
    assert_close(ours[500:-500], ref[500:-500], atol=2e-3, what="resampled")


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError):
        resample_audio(np.zeros((4, 2)), 16000, 8000)
    with pytest.raises(ValueError):
        resample_audio(np.zeros(4), 0, 8000)


def test_missing_file(tmp_path):
    with pytest.raises(MMTalkerError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(MMTalkerError, match="folder"):
        load_audio(tmp_path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(MMTalkerError, match="not a readable audio file") as err:
        load_audio(path)
    assert str(path) in str(err.value)
    text_mp3 = tmp_path / "speech.mp3"  # libsndfile's "does not exist ... (possibly a pipe?)" for an existing file
    text_mp3.write_text("this is not audio\n")
    with pytest.raises(MMTalkerError, match="its contents match no audio format") as err:
        load_audio(text_mp3)
    assert "possibly a pipe" not in str(err.value)


def test_empty_file_is_named_empty(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_bytes(b"")
    for reader in (load_audio, audio_info):
        with pytest.raises(MMTalkerError, match=r"is empty \(0 bytes\)") as err:
            reader(path)
        assert str(path) in str(err.value)


def test_ply_renamed_wav_is_not_audio(tmp_path, fixtures_dir):
    path = tmp_path / "face.wav"
    shutil.copy(fixtures_dir / "meshes" / "flame_sample.ply", path)
    with pytest.raises(MMTalkerError, match="not a readable audio file"):
        load_audio(path)
    with pytest.raises(MMTalkerError, match="not a readable audio file"):
        audio_info(path)


def test_corrupt_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000), 16000)
    data = bytearray(good.read_bytes())
    data[8:12] = b"XXXX"  # the RIFF form type
    bad = tmp_path / "bad.wav"
    bad.write_bytes(bytes(data))
    with pytest.raises(MMTalkerError):
        load_audio(bad)


def test_truncated_wav_reads_what_is_there_or_fails_clearly(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000, seconds=1.0), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: 44 + 2 * 8000])
    with pytest.warns(UserWarning, match="cut.wav: truncated: its header promises 1.00 s"):
        out = load_audio(cut)
    assert len(out) == 8000


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(MMTalkerError, match="no samples"):
        load_audio(path)


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _tone(16000, seconds=0.25), 16000)
    assert len(load_audio(path, min_duration=0.2)) == 4000
    with pytest.raises(MMTalkerError, match="too short"):
        load_audio(path, min_duration=0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = _tone(16000)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(MMTalkerError, match="NaN or infinite"):
        load_audio(path)


def test_save_wav_round_trip_and_no_overwrite(tmp_path):
    x = _tone(SAMPLE_RATE, peak=0.7)
    path = save_wav(tmp_path / "sub" / "out.wav", x)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert_close(load_audio(path), x, atol=1.0 / 32767, what="16-bit round trip")
    before = path.read_bytes()
    with pytest.raises(MMTalkerError, match="already exists"):
        save_wav(path, np.zeros(10, np.float32))
    assert path.read_bytes() == before
    save_wav(path, np.zeros(10, np.float32), overwrite=True)
    assert audio_info(path).frames == 10


def test_save_wav_clips_small_overshoot_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="1 samples beyond full scale"):
        path = save_wav(tmp_path / "over.wav", np.array([0.0, 1.5, -0.5], np.float32))
    back, _ = sf.read(path, dtype="float32")
    assert_close(back, [0.0, 1.0, -0.5], atol=1.0 / 32767, what="clipped")


def test_save_wav_refuses_bad_audio(tmp_path):
    with pytest.raises(MMTalkerError, match="far beyond full scale"):
        save_wav(tmp_path / "loud.wav", np.array([0.0, 300.0], np.float32))
    with pytest.raises(MMTalkerError, match="NaN"):
        save_wav(tmp_path / "nan.wav", np.array([0.0, np.nan], np.float32))
    with pytest.raises(MMTalkerError, match="mono"):
        save_wav(tmp_path / "st.wav", np.zeros((10, 2), np.float32))
    assert not any(tmp_path.iterdir())


def test_a_cut_wav_is_read_with_a_warning_naming_it(tmp_path):
    """libsndfile reads a wav cut short without a word: the header's promise is checked against the file."""
    import warnings

    from mmtalker.audio.io import wav_share_present

    good = tmp_path / "whole.wav"
    sf.write(good, (0.1 * np.sin(np.arange(32000) / 5)).astype(np.float32), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:2000])
    assert wav_share_present(good) == 1.0 and wav_share_present(cut) == pytest.approx(1956 / 64000, rel=0.01)
    with pytest.warns(UserWarning, match=r"cut.wav: truncated: its header promises 2.00 s of audio, the file holds 0.06 s"):
        assert len(load_audio(cut)) == 978
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(good)  # a whole file: no warning


def _mp3(tmp_path, seconds=3.0):
    rate = 22050
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    path = tmp_path / "tone.mp3"
    sf.write(path, x, rate, format="MP3")
    return path


def test_a_damaged_mp3_is_one_error_with_the_decoders_words_and_nothing_else_on_stderr(tmp_path, capfd):
    data = bytearray(_mp3(tmp_path).read_bytes())
    data[len(data) // 3: len(data) // 3 + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(bytes(data))
    with pytest.raises(MMTalkerError, match=r"bad.mp3: the audio data is corrupt or truncated \(.*the mp3 decoder: "):
        load_audio(bad)
    assert capfd.readouterr().err == ""  # libmpg123's own lines went into the error, not around it


def test_a_cut_mp3_warns_how_much_of_it_was_decoded(tmp_path, capfd):
    whole = _mp3(tmp_path)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"cut.mp3: damaged or cut: its header promises 3.0\d s, 1.\d\d s of audio could be decoded"):
        out = load_audio(cut)
    assert 1.3 < len(out) / SAMPLE_RATE < 1.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(whole)  # a whole mp3: no warning
    assert capfd.readouterr().err == ""


def test_inspect_decodes_the_audio_and_records_damage(tmp_path, capsys):
    from mmtalker.cli import main

    whole = _mp3(tmp_path)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["inspect", str(cut)]) == 0
    out, err = capsys.readouterr()
    assert "damaged" in out and "its header promises 3.0" in out and re.search(r"read_as +2\d{4} samples \(1\.\d\d s\)", out)
    assert err == ""


def test_the_cli_shows_mmtalkers_warnings_as_one_line(capsys, monkeypatch):
    import mmtalker.audio.io as io_module
    from mmtalker.cli import _one_line_warning

    shown_by_python = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest, **kw: shown_by_python.append(str(message)))
    show = _one_line_warning("animate")
    show(UserWarning("a.wav: truncated"), UserWarning, io_module.__file__, 10)
    assert capsys.readouterr().err == "mmtalker animate: warning: a.wav: truncated\n" and shown_by_python == []
    show(UserWarning("elsewhere"), UserWarning, "/somewhere/else/torch/x.py", 3)  # others' warnings: as Python shows them
    assert shown_by_python == ["elsewhere"] and capsys.readouterr().err == ""


def test_decoder_capture_keeps_other_writers_lines_and_stderr_itself(tmp_path, capfd):
    """While an mp3 decodes, fd 2 goes to a capture: lines others wrote then reach stderr as before and are no
    decoder message (a logging thread's lines made a clean file 'damaged'); threads decoding at once leave fd 2
    where it was (one saved another's temporary file as 'the' stderr, and all output after was lost)."""
    import os
    import threading

    from mmtalker.audio.io import _decoder_messages

    whole = _mp3(tmp_path)
    with _decoder_messages(whole) as said:
        os.write(2, b"WARNING:root:server: request handled\nWarning: from another thread\n")  # a logging thread's
    assert said == [] and "request handled\nWarning: from another thread" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt), _decoder_messages(whole) as said:  # a read interrupted midway
        os.write(2, b"still shown\n")
        raise KeyboardInterrupt
    assert "still shown" in capfd.readouterr().err
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    before = os.fstat(2)

    def decode():
        for _ in range(5):
            load_audio(cut)

    with warnings.catch_warnings():  # here, not in the threads: catch_warnings is not thread-safe
        warnings.simplefilter("ignore")
        threads = [threading.Thread(target=decode) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
