"""mp4 writing: h264 video with the speech muxed as AAC, through the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    audio_path: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Writes ``frames`` ((H, W, 3) uint8 each, all the same size) as an h264 mp4 at ``fps``.

    With ``audio_path`` the audio is muxed as AAC; cut or pad it to the frames' duration first
    (:func:`fit_audio`) so that sound and picture end together. The file is written to a temporary name first and
    renamed at the end, so an interrupted run never leaves a half-written video under ``path``.
    """
    import imageio_ffmpeg

    path = Path(path)
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass --overwrite to replace it, or choose another --out")
    if fps <= 0:
        raise MMTalkerError("fps", f"must be positive, got {fps}")
    if audio_path is not None and not Path(audio_path).is_file():
        raise MMTalkerError(audio_path, "audio file not found")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = None
    count = 0
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if writer is None:
                h, w = frame.shape[:2]
                params = dict(fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None, macro_block_size=2,
                              ffmpeg_log_level="error", output_params=["-crf", "20", "-preset", "veryfast",
                                                                           "-movflags", "+faststart"])  # index first: plays while loading
                if audio_path is not None:
                    params.update(audio_path=str(audio_path), audio_codec="aac")
                writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), **params)
                writer.send(None)
            writer.send(frame)
            count += 1
        if writer is None:
            raise MMTalkerError(path, "no frames to write")
        writer.close()
        writer = None
        os.replace(tmp, path)
    except RuntimeError as exc:  # ffmpeg's failures come as RuntimeError with its log
        text = str(exc).strip()
        raise MMTalkerError(path, f"ffmpeg failed: {text.splitlines()[-1] if text else exc}") from None
    except OSError as exc:  # a broken pipe: ffmpeg quit early (e.g. unable to open its output)
        if exc.errno is not None and exc.errno != errno.EPIPE:
            raise  # our own file-system error: the command line names its file
        writer = None  # its process is gone; closing it again would raise the same error
        raise MMTalkerError(path, "ffmpeg stopped before the video was written (its own message is above)",
                            "check that the folder can be written") from None
    finally:
        if writer is not None:
            try:
                writer.close()
            except (RuntimeError, OSError):
                pass
        if tmp.exists():
            tmp.unlink()
    return path


VIDEO_MAX_RATE = 48000
"""Hz: speech muxed into a video keeps its own rate up to this (AAC's usual ceiling for speech)."""


def speech_for_video(path) -> tuple[np.ndarray, int]:
    """A speech file as mono float32 at its own sample rate (at most :data:`VIDEO_MAX_RATE`), for the video's sound:
    the 16 kHz the models hear would throw away what a 44.1 kHz recording has above 8 kHz."""
    from mmtalker.audio.io import audio_info, load_audio

    rate = min(audio_info(path).sample_rate, VIDEO_MAX_RATE)
    return load_audio(path, sample_rate=rate), rate


def fit_audio(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """``audio`` (N,) cut or zero-padded to exactly the duration of ``num_frames`` at ``fps``."""
    n = int(round(num_frames / fps * sample_rate))
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def video_info(path: str | os.PathLike) -> dict:
    """Frame count, fps, size and duration of a video, and the duration and sample rate of its audio stream if any."""
    import re
    import subprocess

    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise MMTalkerError(path, "video file not found")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    audio = None
    if "Audio:" in probe.stderr:
        # decode the audio stream to count its samples exactly
        out = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
            capture_output=True,
        )
        audio = len(out.stdout) / 2 / SAMPLE_RATE
    fps = float(meta["fps"])
    match = re.search(r"Audio: (\w+)", probe.stderr)
    rate = re.search(r"Audio: .*?(\d+) Hz", probe.stderr)
    return {
        "frames": frames, "fps": fps, "size": tuple(meta["size"]), "duration": frames / fps,
        "video_codec": meta.get("codec"), "audio_codec": match.group(1) if match else None, "audio_duration": audio,
        "audio_rate": int(rate.group(1)) if rate else None,
    }
