"""Checks on weights read from a file: a state dict, parameter name → tensor."""

from __future__ import annotations

from typing import Mapping

import torch


def first_nonfinite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or ±inf, else None."""
    return next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
