"""Checkpoints as safetensors weights plus a JSON config: no pickled code anywhere.

A checkpoint is a folder:

- ``model.safetensors``: every parameter and buffer of the model, mesh facts included (faces, vertex UVs,
  neutral and subject templates, motion scale), so loading needs nothing else;
- ``config.json``: ``{"format": "mmtalker-checkpoint", "version": 1, "model_class": "MMTalker",
  "model": MMTalkerConfig, "weights_sha256": …, "extras": {...}}``; extras hold the training config,
  the dataset's name/fps/units, the epoch and validation metrics;
- for resuming, optionally ``training_state.safetensors`` + ``training_state.json`` (optimizer moments,
  step, epoch, RNG states).

Every file is written to a temporary name and moved into place with ``os.replace`` (atomic), weights
first and config last; the config's SHA-256 of the weights catches truncated or mismatched files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mmtalker.errors import MMTalkerError
from mmtalker.models.mmtalker import MMTalker, MMTalkerConfig
from mmtalker.train.config import build_dataclass
from mmtalker.train.averaging import RAW
from mmtalker.weights import first_nonfinite, save_safetensors

FORMAT = "mmtalker-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "training_state.safetensors"
STATE_META = "training_state.json"


# ------------------------------------------------------------------------------------------------ file helpers
def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then move tmp_path onto path atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------- model files
def save_checkpoint(directory: str | Path, model: MMTalker, extras: dict | None = None) -> Path:
    """Write model.safetensors and config.json into ``directory`` (created if needed). Returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    _atomic_write(weights, lambda p: save_safetensors(_contiguous(model.state_dict()), p, metadata={"format": FORMAT}))
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "model": _config_dict(model.config),
        "weights_sha256": _sha256(weights),
        "extras": extras or {},
    }
    _write_json(directory / CONFIG, config)
    return directory


def _config_dict(config: MMTalkerConfig) -> dict:
    import dataclasses

    return dataclasses.asdict(config)


def read_checkpoint_meta(directory: str | Path) -> dict:
    """config.json of a checkpoint folder of any model kind, checked for format and version."""
    directory = Path(directory)
    path = directory / CONFIG
    if directory.is_file():
        raise MMTalkerError(directory, "is a file; a checkpoint is a folder",
                            f"pass the folder holding model.safetensors and config.json ({directory.parent}?)")
    if not directory.is_dir():
        raise MMTalkerError(directory, "checkpoint folder not found", "pass the folder holding model.safetensors and config.json")
    if not path.is_file():
        raise MMTalkerError(directory, f"no {CONFIG} in this folder: not an mmtalker checkpoint")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MMTalkerError(path, f"not valid JSON ({exc})", "the file is truncated or damaged") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise MMTalkerError(path, "not an mmtalker checkpoint config (no 'format': 'mmtalker-checkpoint')")
    if config.get("version") != VERSION:
        raise MMTalkerError(path, f"checkpoint format version {config.get('version')!r}; this mmtalker reads version {VERSION}")
    _check_sections(config, path)
    return config


# the entries of config.json that are mappings (save_checkpoint's and the trainers' extras), as key paths
_SECTIONS = (("model",), ("extras",), ("extras", "training"), ("extras", "training", "data"), ("extras", "dataset"),
             ("extras", "dataset", "units"), ("extras", "metrics"))


def _check_sections(config: dict, path: Path) -> None:
    """Each of ``_SECTIONS`` a mapping where present (absent or null: no entry), else MMTalkerError naming
    ``path`` and the entry, so that no reader of a damaged config.json fails on it half-way."""
    for keys in _SECTIONS:
        value = config
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            raise MMTalkerError(path, f"entry '{'.'.join(keys)}' must be a mapping, got {type(value).__name__}",
                                "the file is damaged; use another checkpoint or retrain")


def trained_split_file(meta: dict) -> str | None:
    """The split file (``data.splits``) a checkpoint's training config names, from :func:`read_checkpoint_meta`'s
    dict; None when it trained on its dataset's own splits or the config does not say."""
    training = (meta.get("extras") or {}).get("training") or {}
    return (training.get("data") or {}).get("splits") or None


def read_checkpoint_config(directory: str | Path) -> dict:
    """config.json of an MMTalker checkpoint folder (:func:`read_checkpoint_meta`, and the model class checked)."""
    config = read_checkpoint_meta(directory)
    path = Path(directory) / CONFIG
    if config.get("model_class") != MMTalker.__name__:
        raise MMTalkerError(path, f"checkpoint of model {config.get('model_class')!r}, not {MMTalker.__name__}")
    return config


def _read_weights(directory: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS
    if not path.is_file():
        raise MMTalkerError(directory, f"no {WEIGHTS} in this checkpoint folder")
    if expected_sha is not None and _sha256(path) != expected_sha:
        raise MMTalkerError(path, "weights do not match config.json (checksum differs)", "the file is truncated, damaged or from another run")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MMTalkerError(path, f"cannot read the weights ({exc})", "the file is truncated or damaged") from None
    bad = first_nonfinite(state)
    if bad is not None:
        raise MMTalkerError(path, f"weight '{bad}' has NaN or infinite values", "the training diverged; use an earlier checkpoint")
    return state


def load_error_detail(exc: Exception, keys: int = 3, problems: int = 2) -> str:
    """One line saying what a ``load_state_dict`` error lists under its heading (``Error(s) in loading
    state_dict for X:``): its first ``problems`` lines (missing, unexpected or mis-sized entries), each
    list of keys cut to its first ``keys``. Any other error: its text on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    parts = []
    for line in lines:
        head, sep, names = line.partition(": ")
        if sep and head.endswith("key(s) in state_dict"):
            found = [n.strip(' ".') for n in names.split(", ")]
            more = f" and {len(found) - keys} more" if len(found) > keys else ""
            line = f"{head}: {', '.join(found[:keys])}{more}"
        sizes = re.fullmatch(r"(size mismatch for \S+): copying a param with shape torch.Size\((.*)\) from checkpoint, "
                             r"the shape in current model is torch.Size\((.*)\)\.?", line)
        if sizes:
            line = f"{sizes[1]}: {sizes[2]} in the weights, {sizes[3]} in the model"
        parts.append(line.rstrip(". "))
    more = f"; {len(parts) - problems} more problem(s)" if len(parts) > problems else ""
    return "; ".join(parts[:problems]) + more


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from a checkpoint folder.

    Returns (model in eval mode on ``device``, MMTalkerConfig, extras dict). Raises MMTalkerError when the
    folder is not an MMTalker checkpoint, its files are truncated, or weights and config disagree.
    """
    from mmtalker.devices import resolve_device

    device = resolve_device(device)  # before reading anything: "tpu", 5, or a GPU this machine lacks
    directory = Path(directory)
    meta = read_checkpoint_config(directory)
    config = build_dataclass(MMTalkerConfig, meta.get("model", {}), f"{directory / CONFIG}: model")
    state = _read_weights(directory, meta.get("weights_sha256"))
    needed = ["faces", "vertex_uv", "template", "subject_templates", "motion_scale"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise MMTalkerError(directory / WEIGHTS, f"weights lack the mesh buffers {', '.join(missing)}: not an MMTalker checkpoint")
    try:
        model = MMTalker(config, state["faces"], state["vertex_uv"], state["template"], state["subject_templates"],
                         state["motion_scale"].item(), corner_uv=state.get("corner_uv"))
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches between config and weights
        raise MMTalkerError(directory, f"weights do not fit the model described by config.json ({load_error_detail(exc)})") from None
    if result.missing_keys or result.unexpected_keys:
        raise MMTalkerError(
            directory,
            f"weights and config.json disagree: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}",
        )
    return model.to(device).eval(), config, meta.get("extras", {})


# -------------------------------------------------------------------------------------------- training state
def check_resume_kind(run_dir: str | Path, kind: str) -> None:
    """Refuse (MMTalkerError naming ``run_dir``) to resume a run whose checkpoints (``last/``, and a CodeTalker
    run's ``stage1/last/``) hold another model kind than ``kind``, the one the training config trains: the
    run's weights and optimizer state cannot fit the network that config builds."""
    from mmtalker.models.registry import checkpoint_kind

    run_dir = Path(run_dir)
    for sub in ("last", "stage1/last"):
        if (run_dir / sub / CONFIG).is_file():
            held = checkpoint_kind(run_dir / sub)
            if held != kind:
                raise MMTalkerError(run_dir, f"holds a run of kind {held} ({sub}/{CONFIG}), but the config trains {kind}",
                                    f"resume it with the {held} config it was started with, or choose another --out")


def _flatten_optimizer(name: str, state_dict: dict, tensors: dict) -> dict:
    """Move an optimizer state_dict's tensors into ``tensors``; return the JSON-able rest."""
    state = {}
    for idx, entries in state_dict["state"].items():
        state[str(idx)] = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{name}.{idx}.{key}"] = value
                state[str(idx)][key] = {"tensor": f"{name}.{idx}.{key}"}
            else:
                state[str(idx)][key] = value
    return {"state": state, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(meta: dict, tensors: dict) -> dict:
    state = {}
    for idx, entries in meta["state"].items():
        state[int(idx)] = {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v for k, v in entries.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(directory: str | Path, optimizers: dict, modules: dict, counters: dict, rng: np.random.Generator,
                        generators: dict[str, torch.Generator] | None = None) -> None:
    """Everything ``--resume`` needs besides the model: optimizer moments, extra modules (the sampler),
    counters (epoch, step, best score, history) and RNG states (torch's, numpy's, and named torch generators
    such as the one drawing the UV points)."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = _device_rng()
    tensors.update({f"rng.gen.{name}": g.get_state() for name, g in (generators or {}).items()})
    meta = {"format": FORMAT, "counters": counters, "numpy_rng": rng.bit_generator.state, "optimizers": {}, "modules": []}
    for name, opt in optimizers.items():
        meta["optimizers"][name] = _flatten_optimizer(f"optim.{name}", opt.state_dict(), tensors)
    for name, module in modules.items():
        meta["modules"].append(name)
        tensors.update({f"module.{name}.{k}": v for k, v in module.state_dict().items()})
    _atomic_write(directory / STATE, lambda p: save_safetensors(_contiguous(tensors), p))
    meta["sha256"] = _sha256(directory / STATE)
    _write_json(directory / STATE_META, meta)


def _rank_rng_path(directory: Path, rank: int, epoch: int) -> Path:
    return Path(directory) / f"rng_rank{rank}_epoch{epoch}.safetensors"


def _device_rng() -> dict[str, torch.Tensor]:
    """Torch's CPU RNG state, and the current CUDA device's when CUDA is in use."""
    states = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["rng.cuda"] = torch.cuda.get_rng_state()
    return states


def _set_device_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def save_rank_rng(directory: str | Path, rank: int, epoch: int) -> None:
    """Data-parallel training: a rank other than 0 keeps its own torch RNG (dropout masks) after ``epoch``
    beside the training state rank 0 writes (batches and UV points come from generators all ranks share).

    Written before rank 0 writes its state for ``epoch``; the file of the epoch before stays until then,
    so whenever the run is killed, the state's epoch has its file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(_rank_rng_path(directory, rank, epoch), lambda p: save_safetensors(_contiguous(_device_rng()), p))
    for old in directory.glob(f"rng_rank{rank}_epoch*.safetensors"):
        tail = old.name[len(f"rng_rank{rank}_epoch") : -len(".safetensors")]
        if tail.isdigit() and int(tail) < epoch - 1:
            old.unlink()


def load_rank_rng(directory: str | Path, rank: int, epoch: int) -> bool:
    """Restore what :func:`save_rank_rng` wrote for ``rank`` after ``epoch``; False when there is no such
    file (the run is resumed on more processes than it started with)."""
    path = _rank_rng_path(Path(directory), rank, epoch)
    if not path.is_file():
        return False
    try:
        _set_device_rng(load_file(str(path)))
    except (SafetensorError, KeyError, RuntimeError) as exc:
        raise MMTalkerError(path, f"unreadable RNG state ({exc})", "delete it to resume with a fresh seed for that rank") from None
    return True


def load_training_state(directory: str | Path, optimizers: dict, modules: dict, rng: np.random.Generator,
                        generators: dict[str, torch.Generator] | None = None) -> dict:
    """Restore what ``save_training_state`` wrote; returns the counters."""
    directory = Path(directory)
    meta_path = directory / STATE_META
    if not meta_path.is_file():
        raise MMTalkerError(directory, "no training state to resume from", "this checkpoint was not saved for resuming; start a new run")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MMTalkerError(meta_path, f"not valid JSON ({exc})") from None
    path = directory / STATE
    if not path.is_file() or _sha256(path) != meta.get("sha256"):
        raise MMTalkerError(path, "training state is missing, truncated or does not match its JSON")
    tensors = load_file(str(path))
    saved = set(meta.get("modules", []))
    for name in modules:
        if name not in saved:
            hint = ("the run was trained without optim.ema; resume it with the same setting" if name == RAW
                    else "resume with the settings the run was started with")
            raise MMTalkerError(path, f"holds no '{name}' to resume", hint)
    unused = saved - set(modules)
    if unused == {RAW}:
        raise MMTalkerError(path, "was saved with optim.ema (weight averaging) on", "resume it with the same optim.ema")
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(meta["optimizers"][name], tensors))
    for name, module in modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    _set_device_rng(tensors)
    for name, g in (generators or {}).items():
        if f"rng.gen.{name}" in tensors:
            g.set_state(tensors[f"rng.gen.{name}"])
    rng.bit_generator.state = meta["numpy_rng"]
    return meta["counters"]
