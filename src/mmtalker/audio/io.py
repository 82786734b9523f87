"""Reading and writing speech: any file libsndfile reads, returned as 16 kHz mono float32.

Everything downstream (audio encoders, datasets, the synthetic benchmark) works at :data:`SAMPLE_RATE`;
this module is the one place that number lives. Files are read with soundfile (wav at 8/16/24/32-bit int
or float, flac, ogg, mp3, ...), multi-channel audio is downmixed by the mean of its channels, and the
rate is changed with soxr. Amplitude is never normalised: a sample at 0.5 of full scale stays 0.5.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mmtalker.errors import MMTalkerError

SAMPLE_RATE = 16000
"""Samples per second of every waveform handed between mmtalker modules."""

MAX_CLIP_PEAK = 2.0
"""save_wav clips (with a warning) samples up to this peak; beyond it the waveform is refused."""

# What soundfile/libsndfile raise on files it cannot parse (LibsndfileError is a RuntimeError).
_READ_ERRORS = (RuntimeError, ValueError, TypeError, OverflowError, MemoryError, EOFError, sf.SoundFileError)

_NO_FORMAT = "its contents match no audio format libsndfile knows"

_HINT_FORMATS = "mmtalker reads wav, flac, ogg and mp3 (any rate, mono or stereo)"


@dataclass(frozen=True)
class AudioInfo:
    """What a speech file holds, read from its header.

    Attributes:
        path: the file, as given.
        sample_rate: samples per second of the file (not of what :func:`load_audio` returns).
        channels: number of channels (1 mono, 2 stereo, ...).
        frames: samples per channel.
        duration: seconds, ``frames / sample_rate``.
        format: container, e.g. ``"WAV"``, ``"FLAC"``, ``"OGG"``, ``"MP3"``.
        subtype: sample encoding, e.g. ``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``.
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MMTalkerError(path, "no such file", "check the path")
    if path.is_dir():
        raise MMTalkerError(path, "is a folder, not a speech file", _HINT_FORMATS)
    if path.stat().st_size == 0:
        raise MMTalkerError(path, "is empty (0 bytes)", "was it written completely? " + _HINT_FORMATS)


_MP3_KBITS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 Layer III
              0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}  # MPEG-2 and 2.5
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(raw: bytes, at: int) -> int | None:
    """The length in bytes of the MPEG audio Layer III frame whose header starts at ``raw[at]``, or None when no
    valid header is there (sync, a real version, bitrate and sampling rate)."""
    if at + 4 > len(raw) or raw[at] != 0xFF or raw[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (raw[at + 1] >> 3) & 3, (raw[at + 1] >> 1) & 3
    bitrate, rate, padding = raw[at + 2] >> 4, (raw[at + 2] >> 2) & 3, (raw[at + 2] >> 1) & 1
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return None
    kbits = _MP3_KBITS[3 if version == 3 else 0][bitrate]
    return (144 if version == 3 else 72) * kbits * 1000 // _MP3_RATES[version][rate] + padding


def untagged_mp3(raw: bytes, frames: int = 3) -> bool:
    """An mp3 without an ID3 tag starts with a frame header, and each frame's length leads to the next header:
    ``frames`` such headers in a row (as far as ``raw`` goes). Raw PCM speech that happens to start like one header is
    not followed by the chain (none of the 4360 of 1.6 M starts of the test fixtures' speech that look like one)."""
    at = 0
    for _ in range(frames):
        length = _mp3_frame_length(raw, at)
        if length is None:
            return False
        at += length
        if at + 4 > len(raw):
            return at > length  # ``raw`` ends here: an mp3 if at least two headers were seen
    return True


_FD2_LOCK = threading.Lock()


def _is_mp3(path: Path) -> bool:
    """An mp3 by name or by its first bytes (an ID3 tag, or a chain of frame headers: :func:`untagged_mp3`)."""
    if path.suffix.lower() == ".mp3":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"ID3") or untagged_mp3(head)




@contextlib.contextmanager
def _decoder_messages(path: Path):
    """What libmpg123 prints on the process's stderr (fd 2) while ``path`` is opened and read, captured into the list
    this yields (filled when the block ends) so it can go into mmtalker's own error or warning instead of around it.
    Other files pass through untouched: libsndfile's own decoders print nothing."""
    lines: list[str] = []
    if not _is_mp3(path):
        yield lines
        return
    with _FD2_LOCK:  # one capture at a time, and fd 2 saved inside the lock: never another capture's temp file
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to capture (a closed fd 2): nothing the decoder says can show anyway
            yield lines
            return
        try:
            with tempfile.TemporaryFile() as tmp:
                sys.stderr.flush()
                os.dup2(tmp.fileno(), 2)
                try:
                    yield lines
                finally:  # also when the read fails or is interrupted: nothing anyone wrote is lost
                    os.dup2(saved, 2)
                    tmp.seek(0)
                    captured = tmp.read().decode("utf-8", "replace").split("\n")
                    # what other threads wrote meanwhile goes where it was going (progress bars' \r kept);
                    # only the decoder's own lines are kept for mmtalker's message
                    others = [line for line in captured if line.strip() and not _is_decoder_line(line)]
                    if others:
                        os.write(2, ("\n".join(others) + "\n").encode("utf-8", "replace"))
                    lines.extend(line.strip() for line in captured if _is_decoder_line(line))
        finally:
            os.close(saved)


_DECODER_WORDS = ("MPEG", "resync", "Skipped", "Xing", "mpg123", "header", "frame", "stream", "seek")


def _is_decoder_line(line: str) -> bool:
    """A line libmpg123 prints: ``[src/libmpg123/parse.c:...] error: ...``, or ``Note: ...`` / ``Warning: ...`` about
    the stream (``Illegal Audio-MPEG-Header``, ``Trying to resync``, ``Xing stream size off``). Other writers' lines
    that merely start with those words are not its."""
    text = line.strip()
    if text.startswith(("[src/libmpg123", "[libmpg123")):
        return True
    return text.startswith(("Note: ", "Warning: ")) and any(word in text for word in _DECODER_WORDS)


def _decoder_said(lines: list[str]) -> str:
    """The decoder's first message (without its source-file prefix), and how many more there were."""
    first = lines[0].split("] ", 1)[-1] if lines[0].startswith("[") else lines[0]
    for prefix in ("Note: ", "Warning: "):
        first = first.removeprefix(prefix)
    return first.rstrip(".") + (f"; and {len(lines) - 1} more message{'s' if len(lines) > 2 else ''}" if len(lines) > 1 else "")


def _reason(exc: Exception) -> str:
    """libsndfile's own words for a failure, without the file name it repeats."""
    text = getattr(exc, "error_string", None) or str(exc).strip() or type(exc).__name__
    if "possibly a pipe" in text:  # libsndfile's words when no format it knows matches an existing, regular file
        return _NO_FORMAT
    return text.rstrip(".")


def _open(path: Path) -> tuple[sf.SoundFile, list[str]]:
    """Open ``path`` with libsndfile, turning its failures into one clear error; also returns what the mp3 decoder
    said while opening it."""
    _check_file(path)
    failure = None
    with _decoder_messages(path) as said:
        try:
            opened = sf.SoundFile(str(path))
        except _READ_ERRORS as exc:
            failure = _reason(exc)
        except OSError as exc:
            raise MMTalkerError(path, f"cannot open the file ({exc.strerror or exc})") from None
    if failure is None:
        return opened, said
    raise MMTalkerError(path, f"not a readable audio file ({failure})", _HINT_FORMATS)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The header of a speech file (rate, channels, length, format) without decoding the samples."""
    path = Path(path)
    f, _ = _open(path)
    with f:
        frames = int(f.frames)
        rate = int(f.samplerate)
        if rate <= 0 or f.channels <= 0:
            raise MMTalkerError(path, f"audio header is invalid (rate {rate}, {f.channels} channels)", _HINT_FORMATS)
        return AudioInfo(
            path=str(path),
            sample_rate=rate,
            channels=int(f.channels),
            frames=frames,
            duration=frames / rate,
            format=str(f.format),
            subtype=str(f.subtype),
        )


def _read_samples(path: Path) -> tuple[np.ndarray, int]:
    """All samples of ``path`` as ``(frames, channels)`` float32 and the file's rate."""
    f, opening = _open(path)
    with f:
        rate = int(f.samplerate)
        if rate <= 0 or f.channels <= 0:
            raise MMTalkerError(path, f"audio header is invalid (rate {rate}, {f.channels} channels)", _HINT_FORMATS)
        failure = None
        with _decoder_messages(path) as said:
            try:
                data = f.read(dtype="float32", always_2d=True)
            except _READ_ERRORS as exc:
                failure = _reason(exc)
        said = opening + said
        if failure is not None:
            if said:
                failure = f"{failure}; the mp3 decoder: {_decoder_said(said)}"
            raise MMTalkerError(path, f"the audio data is corrupt or truncated ({failure})", _HINT_FORMATS)
        promised = int(f.frames)
        short = 0 < len(data) < 0.99 * promised  # a cut mp3: its header (or first frame) says more than it holds
        if said or short:
            what = f"its header promises {promised / rate:.2f} s, " if short else ""
            why = f" (the mp3 decoder: {_decoder_said(said)})" if said else ""
            warnings.warn(f"{path}: damaged or cut: {what}{len(data) / rate:.2f} s of audio could be decoded{why}", stacklevel=3)
    share = wav_share_present(path)
    if share is not None and share < 0.999:
        held = len(data) / rate
        warnings.warn(f"{path}: truncated: its header promises {held / max(share, 1e-9):.2f} s of audio, the file holds "
                      f"{held:.2f} s (was it copied or written completely?)", stacklevel=3)
    return data, rate


def wav_share_present(path: Path) -> float | None:
    """For a RIFF/WAVE file, the share of the bytes its ``data`` chunk declares that the file holds (1.0 when whole;
    libsndfile reads a cut file without a word); None for other files and for headers that declare no size."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    if size in (0, 0xFFFFFFFF):  # a stream's header, written before its length was known
                        return None
                    return min(1.0, (path.stat().st_size - f.tell()) / size)
                f.seek(size + (size & 1), 1)
    except OSError:
        return None


def resample_audio(audio: np.ndarray, src_rate: float, dst_rate: float) -> np.ndarray:
    """Change the sample rate of a mono waveform with soxr (high quality, linear phase).

    Args:
        audio: ``(N,)`` float array at ``src_rate`` samples/s.
        src_rate: rate of ``audio`` in Hz (> 0).
        dst_rate: wanted rate in Hz (> 0).

    Returns:
        ``(round(N * dst_rate / src_rate),)`` float32; the same array (as float32) when the rates are equal.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"resample_audio expects a mono (N,) waveform, got shape {audio.shape}")
    if not (src_rate > 0 and dst_rate > 0):
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    if src_rate == dst_rate or audio.size == 0:
        return audio
    out = soxr.resample(audio, src_rate, dst_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, *, min_duration: float = 0.0) -> np.ndarray:
    """Read a speech file as mono float32 at ``sample_rate``.

    Args:
        path: wav/flac/ogg/mp3 (anything libsndfile reads), any rate, any number of channels.
        sample_rate: rate of the result in Hz (default :data:`SAMPLE_RATE`).
        min_duration: refuse files shorter than this many seconds.

    Returns:
        ``(N,)`` float32 in full-scale units (±1 = the file's full scale), ``N = round(frames * sample_rate / rate)``;
        channels are averaged; peak level is kept (up to the resampler's low-pass filter).

    Raises:
        MMTalkerError: missing file, not audio, corrupt data, no samples, shorter than ``min_duration``,
        or NaN/inf samples.
    """
    path = Path(path)
    data, rate = _read_samples(path)
    if data.shape[0] == 0:
        raise MMTalkerError(path, "the audio file holds no samples", "record or export the speech again")
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise MMTalkerError(path, f"{bad} samples are NaN or infinite", "the file is damaged; export it again")
    duration = data.shape[0] / rate
    if duration < min_duration:
        raise MMTalkerError(path, f"too short: {duration:.3f} s, at least {min_duration:g} s is needed")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample_audio(np.ascontiguousarray(mono), rate, sample_rate)


def save_wav(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, overwrite: bool = False
) -> Path:
    """Write a mono waveform as a 16-bit PCM wav file.

    Args:
        path: where to write; its folder is created if needed.
        audio: ``(N,)`` float waveform in full-scale units. Samples beyond ±1 are clipped with a warning;
            a peak above :data:`MAX_CLIP_PEAK` is an error (the waveform is not in ±1 units).
        sample_rate: rate of ``audio`` in Hz.
        overwrite: replace an existing file (otherwise an existing file is an error).

    Returns:
        The path written.
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise MMTalkerError(path, f"can only write mono audio, got an array of shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise MMTalkerError(path, "refusing to write audio with NaN or infinite samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > MAX_CLIP_PEAK:
        raise MMTalkerError(
            path, f"audio peak {peak:.3g} is far beyond full scale 1.0 (not a ±1 waveform?)", "divide the audio by its peak first"
        )
    if peak > 1.0:  # e.g. a resampler's overshoot on audio recorded at full scale
        clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
        warnings.warn(f"{path}: {clipped} samples beyond full scale (peak {peak:.3f}) clipped to ±1", stacklevel=2)
        audio = np.clip(audio, -1.0, 1.0)
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass overwrite=True (or --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, int(sample_rate), subtype="PCM_16", format="WAV")
    return path
