"""Model kinds: a name (``mmtalker``, ``voca``, ``faceformer``, ``codetalker``) -> config class, model class
and training adapter, so the train command, checkpoint loading and the benchmarks treat all four alike.

A training config names its kind with a top-level ``kind:`` (absent: ``mmtalker``); a checkpoint's
``config.json`` names its model class (``model_class``), which maps back to the kind. Imports are lazy so
that importing the registry costs nothing and creates no import cycles.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from mmtalker.errors import MMTalkerError

DEFAULT_KIND = "mmtalker"


@dataclass(frozen=True)
class ModelKind:
    """Where a kind's pieces live (``module:attribute`` strings, imported on use)."""

    name: str
    config: str  # config dataclass
    model: str  # nn.Module class (its __name__ is the checkpoint's model_class)
    adapter: str | None  # training adapter in mmtalker.train.peers (None: MMTalker's own loop)

    def config_class(self):
        return _resolve(self.config)

    def model_class(self):
        return _resolve(self.model)

    def training_adapter(self):
        return None if self.adapter is None else _resolve(self.adapter)()

    @property
    def class_name(self) -> str:
        return self.model.rsplit(":", 1)[1]


KINDS = {
    k.name: k
    for k in (
        ModelKind("mmtalker", "mmtalker.models.mmtalker:MMTalkerConfig", "mmtalker.models.mmtalker:MMTalker", None),
        ModelKind("voca", "mmtalker.models.voca:VocaConfig", "mmtalker.models.voca:VOCA", "mmtalker.train.peers:VocaAdapter"),
        ModelKind("faceformer", "mmtalker.models.faceformer:FaceFormerConfig", "mmtalker.models.faceformer:FaceFormer",
                  "mmtalker.train.peers:FaceFormerAdapter"),
        ModelKind("codetalker", "mmtalker.models.codetalker:CodeTalkerConfig", "mmtalker.models.codetalker:CodeTalker",
                  "mmtalker.train.peers:CodeTalkerAdapter"),
    )
}


def _resolve(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def get_kind(name: str, what: str = "kind") -> ModelKind:
    """The ModelKind called ``name``; an unknown name raises MMTalkerError naming ``what``."""
    if name not in KINDS:
        raise MMTalkerError(what, f"unknown model kind {name!r}", f"known: {', '.join(KINDS)}")
    return KINDS[name]


def kind_of_class(class_name: str, what: str = "checkpoint") -> ModelKind:
    """The kind whose model class is called ``class_name`` (a checkpoint's ``model_class``)."""
    for kind in KINDS.values():
        if kind.class_name == class_name:
            return kind
    raise MMTalkerError(what, f"checkpoint of an unknown model {class_name!r}", f"known: {', '.join(k.class_name for k in KINDS.values())}")


def config_kind(path: str | Path) -> str:
    """The ``kind:`` of a training config file (after its ``base:`` chain); ``mmtalker`` when absent."""
    from mmtalker.train.config import read_config_dict

    kind = read_config_dict(path).get("kind", DEFAULT_KIND)
    if not isinstance(kind, str):
        raise MMTalkerError(path, f"'kind' must be a model name, got {kind!r}", f"known: {', '.join(KINDS)}")
    get_kind(kind, str(path))
    return kind


def checkpoint_kind(directory: str | Path) -> str:
    """The kind of a checkpoint folder, from its config.json's ``model_class``."""
    from mmtalker.train import checkpoint as ckpt

    meta = ckpt.read_checkpoint_meta(directory)
    return kind_of_class(str(meta.get("model_class")), str(Path(directory) / ckpt.CONFIG)).name


def load_model(directory: str | Path, device="cpu", *, expect: str | None = None):
    """Rebuild any kind's trained model from a checkpoint folder written by ``save_checkpoint``.

    Returns (model in eval mode, its config, extras). ``expect``: refuse (MMTalkerError) a checkpoint of
    another kind. MMTalker checkpoints go through ``mmtalker.train.checkpoint.load_checkpoint``.
    """
    from mmtalker.train import checkpoint as ckpt
    from mmtalker.train.config import build_dataclass

    directory = Path(directory)
    name = checkpoint_kind(directory)
    if expect is not None and name != expect:
        raise MMTalkerError(directory, f"is a {name} checkpoint, not {expect}", "pass a checkpoint of the same model")
    if name == DEFAULT_KIND:
        return ckpt.load_checkpoint(directory, device)
    kind = get_kind(name)
    meta = ckpt.read_checkpoint_meta(directory)
    where = f"{directory / ckpt.CONFIG}: {meta.get('model_class', name)} model"
    config = build_dataclass(kind.config_class(), meta.get("model", {}), where)
    state = ckpt._read_weights(directory, meta.get("weights_sha256"))
    from mmtalker.models.peer_base import MESH_BUFFERS

    missing = [k for k in MESH_BUFFERS if k not in state]
    if missing:
        raise MMTalkerError(directory / ckpt.WEIGHTS, f"weights lack the mesh buffers {', '.join(missing)}")
    try:
        model = kind.model_class().from_state(config, state)
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches, missing or unexpected keys
        raise MMTalkerError(directory, f"weights do not fit the model described by config.json ({ckpt.load_error_detail(exc)})") from None
    return model.to(device).eval(), config, meta.get("extras", {})
