"""Whisper's 80-bin log-mel front end, in torch, batched, for clips of any length.

Same numbers as Whisper (and transformers' ``WhisperFeatureExtractor``): a 400-sample Hann-windowed STFT
every 160 samples (25 ms / 10 ms at 16 kHz, centred with reflect padding, the last frame dropped), power
spectrum, Slaney-style mel filters from 0 to 8 kHz with Slaney area normalisation, ``log10`` floored at
1e-10, clamped to within 8 (i.e. 80 dB) of each clip's maximum, and mapped by ``(x + 4) / 4``.
Unlike Whisper nothing is padded to 30 s: ``N`` samples give ``N // 160`` frames (100 per second).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.errors import MMTalkerError

N_FFT = 400
"""STFT window length in samples (25 ms at 16 kHz)."""
HOP_LENGTH = 160
"""Samples between frames (10 ms at 16 kHz): 100 mel frames per second."""
N_MELS = 80
"""Mel bins of Whisper's (v1/v2 and .en) models."""
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH
"""Mel frames per second."""


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel / 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / logstep)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(logstep * (mel - 15.0)))


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular Slaney mel filter bank with area normalisation.

    Returns:
        (n_mels, n_fft // 2 + 1) float64: weight of each FFT bin in each mel band, 0 Hz to Nyquist.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None] - lower) / (centre - lower)
    falling = (upper - fft_hz[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))  # Slaney norm: each band has unit area in Hz


def num_mel_frames(num_samples: int) -> int:
    """Frames :class:`LogMel` returns for ``num_samples`` samples."""
    return num_samples // HOP_LENGTH


class LogMel(nn.Module):
    """Waveform -> Whisper log-mel spectrogram.

    ``forward(audio)`` takes a Tensor of shape (B, N) (or (N,)) of 16 kHz float samples and returns a
    Tensor of shape (B, N_MELS, N // HOP_LENGTH), channels first as Whisper's conv stem wants them;
    values roughly in [-1, 1.5]. The 80 dB floor is relative to each clip's own loudest bin.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, dtype=torch.float32), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters()).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.shape[-1] < N_FFT:
            raise MMTalkerError("audio", f"is {audio.shape[-1]} samples long; the log-mel needs at least {N_FFT}")
        log_spec = self.log_power(audio)
        return self.scale(log_spec, log_spec.amax(dim=(1, 2), keepdim=True))

    def log_power(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) or (N,) -> log10 mel power (B, N_MELS, N // HOP_LENGTH), before the floor and scaling. Unlike
        :meth:`forward` it takes a stretch shorter than one window (more than half of one: the reflect padding),
        as a stream's first pieces are."""
        if audio.dim() == 1:
            audio = audio[None]
        spec = torch.stft(
            audio.float(), N_FFT, HOP_LENGTH, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec[..., :-1].abs() ** 2  # (B, N_FFT/2+1, N//HOP): Whisper drops the last frame
        return torch.clamp(self.filters @ power, min=1e-10).log10()  # (B, N_MELS, T)

    @staticmethod
    def scale(log_spec: torch.Tensor, peak) -> torch.Tensor:
        """:meth:`log_power`'s output floored at 8 (80 dB) below ``peak`` (the loudest bin, a number or a
        broadcastable Tensor) and mapped by ``(x + 4) / 4``."""
        floor = torch.as_tensor(peak - 8.0, dtype=log_spec.dtype, device=log_spec.device)
        return (torch.maximum(log_spec, floor) + 4.0) / 4.0
