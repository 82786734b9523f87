"""Weights files: checks on weights read from one (a state dict, parameter name → tensor), and writing one."""

from __future__ import annotations

import os
from typing import Mapping

import torch


def first_nonfinite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or ±inf, else None."""
    return next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)


def save_safetensors(tensors: Mapping[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, then the file's permissions set as the umask gives any new file.

    safetensors writes its files readable by their owner only (0600); a checkpoint shared with a group or copied
    for another user should read like every other file a run writes.
    """
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
