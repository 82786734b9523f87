"""Whisper's later blocks fine-tuned by the motion loss, the blocks before them frozen and cached.

A model config's ``audio_finetune: N`` (N ≥ 1) trains Whisper's blocks N, N+1, … up to the last hidden
state the model reads (hidden state k is the output of block k; 0 is the embeddings); the convolutional
stem and blocks 1 … N−1 stay frozen. Their hidden states never change, so the trainer caches them once per
clip and augmentation variant (the *prefix*: hidden state N−1, which feeds block N, and any earlier state
the model reads) and per step runs only the tuned blocks on it, over the whole clip as at inference.

The tuned blocks are a module of the model (:class:`TunedBlocks`, ``model.audio_blocks``): the optimiser,
the weight average, ``--resume`` and the checkpoint hold them like any other weight. At inference
:meth:`TunedBlocks.copy_into` (through ``mmtalker.audio.encoders.trained_model_encoder``) copies them into the speech
encoder's own Whisper, so the offline engine and the
incremental streaming encoder read the tuned network with no other change.

Shapes: ``Ta`` encoder frames (50 per second), ``D`` Whisper's width, ``K`` the hidden states cached.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from mmtalker.audio.encoders import _extra_layers, whisper_inside
from mmtalker.audio.mel import FRAME_RATE
from mmtalker.audio.spec import split_spec
from mmtalker.audio.whisper import EncoderLayer, WhisperEncoderConfig
from mmtalker.errors import MMTalkerError
from mmtalker.weights import first_nonfinite, save_safetensors

WHISPER_HEAD_DIM = 64  # every Whisper model's attention heads are 64 wide, and its FFN 4x the width


def read_states(config) -> list[int]:
    """The Whisper hidden states a model config reads side by side: its spec's ``@N…`` ones, then the extra
    ones (MMTalker's eye pathway). Fine-tuning needs them named (``whisper-tiny.en@3+1+2``, not the bare
    name), so that the model knows which blocks to hold without loading the encoder."""
    name, layers = split_spec(config.audio_encoder)
    where = f"audio encoder {config.audio_encoder!r}"
    if not name.startswith("whisper-"):
        raise MMTalkerError(where, "cannot be fine-tuned (model.audio_finetune): only Whisper encoders can",
                            "set model.audio_finetune: 0, or use a whisper-… encoder")
    if layers is None or any(i < 0 for i in layers):
        raise MMTalkerError(where, "must name its hidden states with non-negative indices for model.audio_finetune",
                            "e.g. whisper-tiny.en@3+1+2 (the outputs of blocks 3, 1 and 2)")
    return [*layers, *_extra_layers(config)]


def tuned_range(config) -> tuple[int, int]:
    """(first, last) Whisper block trained for a config with ``audio_finetune`` > 0, 1-based, inclusive."""
    first = int(config.audio_finetune)
    last = max(read_states(config))
    if first < 1 or first > last:
        raise MMTalkerError(f"model.audio_finetune = {config.audio_finetune}",
                            f"must name a block from 1 to {last}, the last hidden state {config.audio_encoder!r} reads",
                            "0 keeps the encoder frozen")
    return first, last


def check_audio_finetune(config, where: str) -> None:
    """A model config's ``audio_finetune`` (0, or a block its spec lets it tune), else MMTalkerError naming ``where``."""
    if config.audio_finetune < 0:
        raise MMTalkerError(where, f"setting 'audio_finetune' must be 0 or more, got {config.audio_finetune}")
    if config.audio_finetune:
        tuned_range(config)
    if getattr(config, "audio_init", "") and not config.audio_finetune:
        raise MMTalkerError(where, "setting 'audio_init' is the tuned Whisper blocks' start: it needs model.audio_finetune",
                            "set model.audio_finetune (the block it was made from), or leave audio_init unset")
    if getattr(config, "audio_window", 0) and not config.audio_finetune:
        raise MMTalkerError(where, "setting 'audio_window' applies to the fine-tuned Whisper blocks only",
                            "set model.audio_finetune too, or audio_window: 0")


def tuned_width(config) -> int:
    """Width of one of the config's Whisper hidden states: a peer's ``audio_dim`` is all its streams side by side."""
    return int(config.audio_dim) // len(read_states(config))


def prefix_states(config) -> list[int] | None:
    """The frozen hidden states cached per clip: the one feeding the first tuned block, and those read before it;
    None for a frozen encoder (``audio_finetune`` 0: the features themselves are cached)."""
    if not config.audio_finetune:
        return None
    first, _ = tuned_range(config)
    return sorted({s for s in read_states(config) if s < first} | {first - 1})


class TunedBlocks(nn.Module):
    """Copies of Whisper blocks ``first`` … ``last`` (1-based), trained with the model.

    ``forward(prefix)`` takes the cached prefix (B, Ta, K·D), the states :func:`prefix_states` names side
    by side, and returns the states the model reads, side by side in its order: (B, Ta, len(reads)·D).
    When block ``last`` is Whisper's last, its output passes Whisper's final LayerNorm, as the encoder's own
    last hidden state does: :meth:`copy_from` sets the ``final_norm`` flag (a buffer, saved with the weights).
    """

    def __init__(self, config, width: int):
        super().__init__()
        self.first, self.last = tuned_range(config)
        self.rate = FRAME_RATE / 2  # frames per second of the states (Whisper's encoder: half the mel rate)
        self.reads = read_states(config)
        self.cached = prefix_states(config)
        self.width = int(width)
        if self.width % WHISPER_HEAD_DIM:
            raise MMTalkerError(f"audio encoder {config.audio_encoder!r}", f"is {width} wide, not a multiple of Whisper's 64-wide heads")
        cfg = WhisperEncoderConfig(d_model=self.width, n_heads=self.width // WHISPER_HEAD_DIM, ffn_dim=4 * self.width,
                                   n_layers=self.last - self.first + 1)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.window = int(getattr(config, "audio_window", 0))
        for layer in self.layers:
            layer.attn.window = self.window
        self.ln_post = nn.LayerNorm(self.width)
        self.register_buffer("final_norm", torch.tensor(False))

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        D = self.width
        if prefix.shape[-1] != D * len(self.cached):
            raise ValueError(f"prefix must be {D * len(self.cached)} wide (states {self.cached}), got {prefix.shape[-1]}")
        states = {s: prefix[..., k * D : (k + 1) * D] for k, s in enumerate(self.cached)}
        x = states[self.first - 1]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            states[self.first + i] = x
        if bool(self.final_norm):
            states[self.last] = self.ln_post(x)
        return torch.cat([states[s] for s in self.reads], dim=-1)

    @torch.no_grad()
    def copy_from(self, encoder) -> None:
        """Start from the pretrained weights of ``encoder``'s Whisper (any wrapper around it)."""
        whisper = _whisper_of(encoder, self)
        for i, layer in enumerate(self.layers):
            layer.load_state_dict(whisper.layers[self.first - 1 + i].state_dict())
        self.ln_post.load_state_dict(whisper.ln_post.state_dict())
        self.final_norm.fill_(self.last == whisper.cfg.n_layers)
        self.ln_post.requires_grad_(bool(self.final_norm))  # unused otherwise: no gradient to wait for

    @torch.no_grad()
    def copy_into(self, encoder) -> None:
        """Overwrite ``encoder``'s Whisper blocks with these (inference: the encoder then reads the tuned network)."""
        whisper = _whisper_of(encoder, self)
        for i, layer in enumerate(self.layers):
            whisper.layers[self.first - 1 + i].load_state_dict(layer.state_dict())
            whisper.layers[self.first - 1 + i].attn.window = self.window
        if bool(self.final_norm):
            whisper.ln_post.load_state_dict(self.ln_post.state_dict())


def _whisper_base(encoder):
    """The WhisperAudioEncoder inside an AudioEncoder wrapper (HiddenLayer, StackedLayers)."""
    base = whisper_inside(encoder)
    if base is None:
        raise MMTalkerError("audio encoder", f"{type(encoder).__name__} holds no Whisper to fine-tune")
    return base


def _whisper_of(encoder, blocks: TunedBlocks):
    """The WhisperEncoder inside an AudioEncoder wrapper, checked against the tuned blocks' shape."""
    whisper = _whisper_base(encoder).encoder
    if whisper.cfg.d_model != blocks.width or blocks.last > whisper.cfg.n_layers:
        raise MMTalkerError("audio encoder", f"Whisper with {whisper.cfg.n_layers} blocks of width {whisper.cfg.d_model} "
                            f"does not hold blocks {blocks.first}-{blocks.last} of width {blocks.width}")
    return whisper


def frozen_prefix(encoder, audio: torch.Tensor, states: list[int]) -> torch.Tensor:
    """(B, N) 16 kHz audio -> (B, Ta, len(states)·D): the frozen hidden states ``states`` side by side."""
    with torch.no_grad():
        hidden = _whisper_base(encoder).hidden_states(audio, upto=max(states))  # (B, ≤L, Ta, D)
    return torch.cat([hidden[:, s] for s in states], dim=-1)


# ------------------------------------------------------------------------------------- a start other than Whisper's
BLOCKS_FORMAT = "mmtalker-tuned-blocks"


def save_blocks(blocks: TunedBlocks, path, encoder: str) -> None:
    """Write ``blocks`` (their weights, the Whisper ``encoder`` name, the block range and width) to a safetensors
    file that a model config's ``audio_init`` names as the tuned blocks' start (:func:`start_blocks`)."""
    meta = {"format": BLOCKS_FORMAT, "encoder": encoder, "first": str(blocks.first), "last": str(blocks.last),
            "width": str(blocks.width)}
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in blocks.state_dict().items()}, path, metadata=meta)


def start_blocks(blocks: TunedBlocks, encoder, config) -> None:
    """The tuned blocks' starting weights: the pretrained Whisper's (``encoder``), or, when the model config names
    ``audio_init``, the blocks saved there by :func:`save_blocks` (e.g. ``benchmarks/hearing_pretrain.py``'s).
    A file that is missing, not such a file, for other blocks or with non-finite weights raises MMTalkerError
    naming it."""
    blocks.copy_from(encoder)  # also the final_norm flag, which the file must agree with
    path = getattr(config, "audio_init", None)
    if not path:
        return
    file = Path(path).expanduser()
    where = f"model.audio_init {str(file)!r}"
    if not file.is_file():
        raise MMTalkerError(where, "does not exist" if not file.exists() else "is not a file",
                            "give the .safetensors file benchmarks/hearing_pretrain.py wrote, or leave audio_init unset")
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise MMTalkerError(where, f"is not a readable safetensors file ({err})") from None
    if meta.get("format") != BLOCKS_FORMAT:
        raise MMTalkerError(where, f"holds no tuned Whisper blocks (format {meta.get('format')!r}, not {BLOCKS_FORMAT!r})",
                            "give a file written by benchmarks/hearing_pretrain.py")
    name, _ = split_spec(config.audio_encoder)
    have = (meta.get("encoder"), meta.get("first"), meta.get("last"), meta.get("width"))
    want = (name, str(blocks.first), str(blocks.last), str(blocks.width))
    if have != want:
        raise MMTalkerError(where, f"holds {have[0]}'s blocks {have[1]}-{have[2]} ({have[3]} wide); the config tunes "
                            f"{want[0]}'s blocks {want[1]}-{want[2]} ({want[3]} wide)",
                            "make the file with the same model.audio_encoder and model.audio_finetune")
    bad = first_nonfinite(state)
    if bad is not None:
        raise MMTalkerError(where, f"weight '{bad}' has NaN or infinite values",
                            "the teaching run diverged: make the file again (a lower --lr), or leave audio_init unset")
    try:
        blocks.load_state_dict(state)
    except RuntimeError as err:
        raise MMTalkerError(where, f"does not fit the tuned blocks: {str(err).splitlines()[0]}") from None
