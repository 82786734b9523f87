"""An exponential moving average of a network's weights (Polyak averaging), for every trainer.

After each optimiser step the average moves towards the trained weights,

    ā ← d · ā + (1 − d) · w,        d = min(decay, (1 + step) / (10 + step)),

so early on (when the weights change fast) it follows them closely and later it averages over roughly
1 / (1 − decay) steps. Buffers (templates, normalisers) are copied, not averaged. With ``optim.ema`` set,
the trainers validate, select and save the *average* (``best/`` and ``last/`` hold it, so every checkpoint
folder holds the weights to use), and keep the trained weights in ``last/``'s training state for
``--resume``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

RAW = "raw_weights"
"""Name of the trained (not averaged) weights among the training state's modules."""


class WeightAverage:
    """The running average of ``model``'s parameters, held in a frozen copy of it (:attr:`model`)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights after optimiser step number ``step`` (0-based)."""
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, p in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(p.detach().to(avg.dtype), 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)


def scored_model(model: nn.Module, averager: WeightAverage | None) -> nn.Module:
    """The network a trainer validates and saves: the average when there is one, else ``model``."""
    return averager.model if averager is not None else model


def raw_state(model: nn.Module, averager: WeightAverage | None) -> dict[str, nn.Module]:
    """The training state's extra modules for the trained weights: ``{RAW: model}`` when the checkpoint holds
    their average, else none (the checkpoint already holds them)."""
    return {RAW: model} if averager is not None else {}
