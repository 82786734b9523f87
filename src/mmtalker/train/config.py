"""Training configuration: YAML files mapped onto dataclasses, checked key by key and type by type.

A config file has the sections ``data``, ``model`` (``MMTalkerConfig``), ``loss`` (``LossWeights``),
``sampler``, ``augment`` and ``optim``. A file may start with ``base: other.yaml`` (relative to itself);
it then holds only what differs, merged section by section over its base. Unknown keys and values of the
wrong type raise ``MMTalkerError`` naming the file and the key. Dataset facts (fps, vertex count, regions,
splits) are not configured here: they come from the dataset's manifest.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmtalker.audio.augment import AugmentConfig
from mmtalker.errors import MMTalkerError
from mmtalker.mesh.sampling import MEASURES
from mmtalker.models.mmtalker import MMTalkerConfig
from mmtalker.train.losses import LossWeights


@dataclass
class DataConfig:
    path: str = "data/synth"  # dataset folder (relative paths: to the working directory)
    preset: str | None = None  # community layout preset (vocaset, biwi, multiface); None: the folder's manifest
    fps: float | None = None  # train at this frame rate; None: the manifest's fps
    splits: str | None = None  # a split JSON file replacing the dataset's splits (data.manifest.load_splits); None: its own
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    cache_dir: str | None = None  # audio-feature cache; None: $MMTALKER_HOME/features
    augment_variants: int = 3  # augmented copies of each training clip's audio, besides the clean one
    window_frames: int = 64  # training crops (frames); whole clips are used when shorter
    splice_prob: float = 0.0  # share of training windows spliced from two clips of one subject (train.data.draw_windows)
    join_share: float = 0.0  # extra training clips, each two clips of one subject back to back, per training clip (train.joined)
    cover_edges: bool = False  # place windows so a clip's first and last frames are in many more of them (train.data.draw_windows)
    context_frames: int = 0  # frames of the clip shown around each window but not in its loss (train.data.make_batch)
    subjects_per_batch: int | None = 2  # clips of a batch come from this many subjects (None: any): fewer geometry passes
    val_max_clips: int = 16  # validation each epoch scores at most this many clips (the test at the end: all)
    preload_max_gb: float = 4.0  # keep all training displacements in memory when they fit in this

    def check(self, where: str) -> None:
        if self.fps is not None:
            _positive(where, "fps", self.fps)
            if self.fps > 1000:
                raise MMTalkerError(where, f"setting 'fps' must be at most 1000 frames per second, got {self.fps:g}")
        _at_least(where, "augment_variants", self.augment_variants, 0)
        _at_least(where, "window_frames", self.window_frames, 2)  # the velocity term needs two frames
        _at_least(where, "val_max_clips", self.val_max_clips, 1)
        if not self.join_share >= 0.0:
            raise MMTalkerError(where, f"setting 'join_share' must be 0 or more, got {self.join_share}")
        if not 0.0 <= self.splice_prob <= 1.0:
            raise MMTalkerError(where, f"setting 'splice_prob' must lie in [0, 1], got {self.splice_prob}")
        if self.subjects_per_batch is not None:
            _at_least(where, "subjects_per_batch", self.subjects_per_batch, 1)
        _at_least(where, "context_frames", self.context_frames, 0)
        if self.context_frames > 0 and self.splice_prob > 0:
            raise MMTalkerError(where, "settings 'context_frames' and 'splice_prob' cannot be combined: a spliced window has no "
                                       "clip around it; set one of them to 0")


@dataclass
class SamplerConfig:
    points: int = 512  # UV points per training step
    uniform_mix: float = 0.25  # share of uniform samples so no region starves
    learnable: bool = True  # train the per-triangle logits to lower the loss estimate's variance
    measure: str = "area"  # what the loss averages over: "area" (every mm² alike) or "vertices" (per vertex, as the metrics)

    def check(self, where: str) -> None:
        _at_least(where, "points", self.points, 1)
        if self.measure not in MEASURES:
            raise MMTalkerError(where, f"setting 'measure' must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise MMTalkerError(where, f"setting 'uniform_mix' must lie in [0, 1], got {self.uniform_mix}")


@dataclass
class OptimConfig:
    epochs: int = 200  # an epoch = one random window from each training clip
    max_minutes: float | None = None  # stop (after the current epoch's validation) when this much time has passed
    batch_size: int = 8
    lr: float = 1e-3
    sampler_lr: float = 1e-2
    audio_lr: float = 3e-5  # fine-tuned speech-encoder blocks (model.audio_finetune > 0): pretrained, so a small step
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decay to lr·min_lr_ratio at the last epoch
    grad_clip: float = 1.0
    ema: float = 0.0  # > 0: validate, select and save an exponential moving average of the weights (e.g. 0.995)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    select_metric: str = "mve"  # validation metric that picks the best checkpoint: mve, lve, eve or loss
    device: str = "auto"  # auto: cuda when available, else cpu

    def check(self, where: str) -> None:
        """Range checks: a value of the right type can still make no sense (0 epochs, a zero batch)."""
        _at_least(where, "epochs", self.epochs, 1)
        _at_least(where, "batch_size", self.batch_size, 1)
        _at_least(where, "warmup_steps", self.warmup_steps, 0)
        for key in ("lr", "sampler_lr", "audio_lr", "grad_clip"):
            _positive(where, key, getattr(self, key))
        if self.max_minutes is not None:
            _positive(where, "max_minutes", self.max_minutes)
        if not 0.0 <= self.ema < 1.0:
            raise MMTalkerError(where, f"setting 'ema' must lie in [0, 1) (0 = off), got {self.ema}")
        if not 0.0 <= self.min_lr_ratio <= 1.0 or self.weight_decay < 0:
            raise MMTalkerError(where, "min_lr_ratio must lie in [0, 1] and weight_decay be ≥ 0")
        if self.select_metric not in ("mve", "lve", "eve", "loss"):
            raise MMTalkerError(where, f"select_metric must be mve, lve, eve or loss, got {self.select_metric!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise MMTalkerError(where, f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def _at_least(where: str, key: str, value, low) -> None:
    if value < low:
        raise MMTalkerError(where, f"setting '{key}' must be at least {low}, got {value}")


def _positive(where: str, key: str, value) -> None:
    if not value > 0:
        raise MMTalkerError(where, f"setting '{key}' must be positive, got {value}")


@dataclass
class TrainingConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: MMTalkerConfig = field(default_factory=MMTalkerConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ strict building
def _type_ok(value, hint) -> tuple[bool, object]:
    """Check ``value`` against a type hint; returns (ok, value converted where harmless: int -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, conv = _type_ok(value, arg)
            if ok:
                return True, conv
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is typing.Any:
        return True, value
    if origin is list:
        (inner,) = typing.get_args(hint) or (typing.Any,)
        if not isinstance(value, list):
            return False, value
        items = [_type_ok(v, inner) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False, value
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            return False, value
        items = [_type_ok(v, h) for v, h in zip(value, inner)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if hint is dict or origin is dict:
        return isinstance(value, dict), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def build_dataclass(cls, data: dict, where: str):
    """Build dataclass ``cls`` from a dict; unknown keys and wrong types raise MMTalkerError naming ``where``."""
    if not isinstance(data, dict):
        raise MMTalkerError(where, f"expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise MMTalkerError(where, f"setting names must be words, got {bad_keys[0]!r}", f"known: {', '.join(sorted(names))}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise MMTalkerError(where, f"unknown setting(s) {', '.join(unknown)}", f"known: {', '.join(sorted(names))}")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = build_dataclass(hint, value, f"{where}: {key}")
            continue
        ok, conv = _type_ok(value, hint)
        if not ok:
            raise MMTalkerError(where, f"setting '{key}' must be of type {_hint_name(hint)}, got {value!r}")
        values[key] = conv
    built = cls(**values)
    check = getattr(built, "check", None)
    if check is not None:
        check(where)
    return built


def _hint_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# ------------------------------------------------------------------------------------------------ YAML files
class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading exponent numbers without a dot (``1e-4``, ``3E5``) as floats the way YAML 1.2
    does; YAML 1.1, which PyYAML follows, reads them as strings."""


_ConfigLoader.add_implicit_resolver(  # copies SafeLoader's resolvers first: yaml.safe_load is unchanged
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str):
    """YAML text as Python values, the way config files and ``mmtalker train --set`` read them (safe loading;
    ``1e-4`` is a number). Raises ``yaml.YAMLError`` on malformed text."""
    loader = _ConfigLoader(text)  # what yaml.load does, with the safe loader's constructors only
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise MMTalkerError(path, "is a folder; a config is a YAML file", "e.g. configs/mmtalker_synth.yaml")
    if not path.is_file():
        raise MMTalkerError(path, "config file not found", "see configs/ for the shipped ones")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise MMTalkerError(path, "is not a text file (not UTF-8)", "pass a YAML config such as configs/mmtalker_synth.yaml") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise MMTalkerError(path, f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise MMTalkerError(path, "a config file must be a mapping of sections (data, model, loss, …)")
    for section, value in list(data.items()):
        if section in _SCALAR_ENTRIES:
            continue
        if value is None:  # every setting under it commented out: it changes nothing (it must not blank its base's)
            data[section] = {}
        elif not isinstance(value, dict):
            raise MMTalkerError(path, f"section '{section}' must hold settings (key: value lines), got {value!r}")
    return data


_SCALAR_ENTRIES = ("base", "kind")
"""Top-level entries of a config file that are not sections of settings."""


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_dict(path: str | Path, _seen: tuple = ()) -> dict:
    """The merged settings of a YAML file and its ``base:`` chain (a plain dict)."""
    path = Path(path).resolve()
    if path in _seen:
        raise MMTalkerError(path, "config files include each other through 'base:' in a loop")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise MMTalkerError(path, "'base' must be a file name")
    return _merge(read_config_dict(path.parent / base, (*_seen, path)), data)


def load_config(path: str | Path, overrides: dict | None = None, where: str | None = None) -> TrainingConfig:
    """Read a training config (with its bases) and apply ``overrides`` ({section: {key: value}}); errors in the
    settings name ``where`` (default: the file; the train command adds its ``--set`` options)."""
    data = _merge(read_config_dict(path), overrides or {})
    return build_dataclass(TrainingConfig, data, where or str(path))
