"""Whisper's encoder over audio that arrives in pieces, each encoder frame computed (about) once.

Re-encoding a window of past audio with every chunk, as streaming must with an encoder whose frames all
attend to each other, spends most of a push on frames it has encoded before. This keeps, for every
transformer layer, the keys and values of the frames already encoded, and with each chunk runs the layers
on the new frames only (plus a few at the edges): a frame attends to every frame of its *session* so far
and to itself and the frames after it that have arrived.

- A frame stays *provisional* (recomputed with the next chunk) until ``provisional`` frames (20 ms each)
  follow it, so the frames a push emits see a little future; after that its keys and values are fixed.
- The conv stem needs a few frames of audio to its left: ``MARGIN`` frames before the first recomputed one
  are recomputed too and dropped.
- Positions count from the session's start. A session lasts at most ``session_s`` seconds (Whisper's
  table holds 30 s; offline animation uses 20 s windows); the next one starts ``restart_s`` seconds before
  the first provisional frame and re-encodes those in one go.
- The log-mel's 80 dB floor is taken from the loudest bin heard so far in the session (offline: in the
  window).

Only Whisper-based encoders (``whisper-*``, with or without ``@N…`` hidden states) support this;
:func:`supports` says whether an encoder does. Shapes: ``C`` the encoder's output width (its hidden states
side by side, as its ``forward`` gives them).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mmtalker.audio.mel import HOP_LENGTH, N_FFT
from mmtalker.audio.whisper import KVCache

MARGIN = 3
"""Encoder frames recomputed (and dropped) left of the first needed one, for the conv stem and the STFT's padding."""


def _whisper_parts(encoder):
    """(WhisperAudioEncoder, the hidden-state indices ``encoder`` puts side by side), or None for other encoders."""
    from mmtalker.audio.encoders import whisper_inside

    picked = list(getattr(encoder, "main_layers", (-1,))) + list(getattr(encoder, "extra", []))
    base = whisper_inside(encoder)
    return None if base is None else (base, [int(i) % base.num_layers for i in picked])


class RowMajorLinear(nn.Module):
    """``linear``'s map with its weight stored transposed, (in, out): a chunk's dozen rows multiply ~2.5x faster
    by it than through ``F.linear``'s (out, in) weight (MKL, 1 thread, 12 x 384 by 384 x 1536: 0.37 against
    0.91 ms; at 60 rows the two are level)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight_t = linear.weight.detach().t().contiguous()
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features, device=linear.weight.device)
        self.bias = bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight_t).view(*x.shape[:-1], -1)


def _rows_first(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Linear`` in it a :class:`RowMajorLinear` (the same numbers)."""
    module = copy.deepcopy(module)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, RowMajorLinear(child))
            else:
                swap(child)

    swap(module)
    return module


def supports(encoder) -> bool:
    """Whether :class:`IncrementalWhisper` can encode for ``encoder`` (a frozen or trained Whisper encoder)."""
    return _whisper_parts(encoder) is not None


class IncrementalWhisper:
    """Encoder frames (50 per second) of a stream, as ``encoder`` gives them, computed as audio arrives.

    Args:
        encoder: a Whisper-based :class:`mmtalker.audio.encoders.AudioEncoder` (see :func:`supports`).
        provisional: frames after a frame before its keys and values are fixed.
        session_s: longest session, seconds (at most Whisper's 30 s).
        restart_s: seconds of audio before the first provisional frame that a new session re-encodes.
    """

    def __init__(self, encoder, *, provisional: int = 4, session_s: float = 20.0, restart_s: float = 2.0):
        parts = _whisper_parts(encoder)
        if parts is None:
            raise ValueError(f"{type(encoder).__name__} is not a Whisper encoder")
        base, self.picked = parts
        self.mel, self.whisper = base.mel, base.encoder
        cfg = self.whisper.cfg
        self.rate = base.rate
        self.provisional = int(provisional)
        self.session_frames = min(int(round(session_s * self.rate)), cfg.max_positions)
        self.restart_frames = int(round(restart_s * self.rate))
        if self.provisional < 0 or not 0 < self.restart_frames + MARGIN < self.session_frames // 2:
            raise ValueError(f"restart_s {restart_s} s must be well under session_s {session_s} s, provisional ≥ 0")
        self.upto = max(self.picked)  # the last hidden state needed: later layers are not run
        self.dim = cfg.d_model * len(self.picked)
        n_run = min(self.upto, cfg.n_layers)  # the layers a push runs
        self.device = self.whisper.positions.device  # the caches live where the encoder runs
        self._caches = [KVCache(cfg.n_heads, cfg.d_model // cfg.n_heads, self.session_frames, self.device) for _ in range(n_run)]
        self._states = torch.zeros(self.session_frames, self.dim, device=self.device)
        with torch.no_grad():
            self._layers = [_rows_first(layer).eval() for layer in self.whisper.layers[:n_run]]
        self._audio = np.zeros(0, np.float32)
        self._audio_start = 0  # sample index of _audio[0]
        self._peak = -np.inf  # loudest log-mel bin so far
        self.session_start = 0  # global index of the session's first frame (position 0)
        self.final = 0  # global index of the first frame still to (re)compute
        self.num_frames = 0  # frames encoded so far (global), provisional ones included
        self.received = 0

    def push(self, chunk: np.ndarray) -> None:
        """Append 16 kHz samples (n,) and encode every frame they complete."""
        self._audio = np.concatenate([self._audio, np.asarray(chunk, np.float32).reshape(-1)])
        self.received += int(np.asarray(chunk).size)
        if self.received < N_FFT:
            return
        frames = (self.received // HOP_LENGTH + 1) // 2  # as WhisperAudioEncoder.num_frames_for
        if frames <= self.final:
            return
        if frames - self.session_start > self.session_frames:
            self.session_start = max(0, self.final - self.restart_frames)
            self.final = self.session_start
            self._peak = -np.inf  # the floor follows the session's own audio, as offline each window's
        self._encode(self.final, frames)
        self.num_frames = frames
        self.final = max(self.final, frames - self.provisional)
        keep = max(0, 2 * (self.final - self.restart_frames - MARGIN) * HOP_LENGTH)  # what a restart would re-encode
        if keep > self._audio_start:
            self._audio = self._audio[keep - self._audio_start:]
            self._audio_start = keep

    @torch.inference_mode()
    def _encode(self, first: int, stop: int) -> None:
        """Run frames [first, stop) (global) through the stem and the layers, reading the session's cache."""
        w = self.whisper
        mel_first = 2 * max(0, first - MARGIN)  # even: encoder frame j is mel frames 2j, 2j + 1
        a = mel_first * HOP_LENGTH - self._audio_start
        audio = torch.from_numpy(self._audio[a : (self.received // HOP_LENGTH) * HOP_LENGTH - self._audio_start]).to(self.device)
        log_spec = self.mel.log_power(audio)  # (1, n_mels, Tm)
        self._peak = max(self._peak, float(log_spec.max()))
        x = w.stem(self.mel.scale(log_spec, self._peak))  # frames mel_first / 2 ..
        x = x[:, first - mel_first // 2 : stop - mel_first // 2]
        lo, hi = first - self.session_start, stop - self.session_start
        x = x + w.positions[lo:hi]
        states = [x[0]]
        for layer, cache in zip(self._layers, self._caches):
            x = layer(x, cache, lo)
            states.append(x[0])
        if self.upto == w.cfg.n_layers:
            states[-1] = w.ln_post(states[-1])
        self._states[lo:hi] = torch.cat([states[i] for i in self.picked], dim=-1)

    def states(self, start: int, stop: int) -> torch.Tensor:
        """Encoder output of frames [start, stop) (global indices, within the current session), (stop − start, C)."""
        if not self.session_start <= start <= stop <= self.num_frames:
            raise IndexError(f"frames {start}..{stop} are outside {self.session_start}..{self.num_frames}")
        return self._states[start - self.session_start : stop - self.session_start]
