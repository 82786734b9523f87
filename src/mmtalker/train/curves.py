"""Loss curves of a training run as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Draw training loss terms and validation metrics per epoch from ``history`` records
    (``{"epoch", "train": {...}, "val": {...}}``) into ``path`` (written atomically)."""
    path = Path(path)
    epochs = [r["epoch"] for r in history]
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "recon", "velocity"):
        values = [r["train"].get(key) for r in history]
        if any(v is not None for v in values):
            ax_train.plot(epochs, values, marker=".", label=f"train {key}")
    val_loss = [r["val"].get("loss") for r in history]
    if any(v is not None for v in val_loss):
        ax_train.plot(epochs, val_loss, marker=".", label="val loss")
    ax_train.set(xlabel="epoch", ylabel="loss (motion units²)", yscale="log", title="losses")
    for key in ("mve", "lve", "eve"):
        values = [r["val"].get(key) for r in history]
        if any(v is not None for v in values):
            ax_val.plot(epochs, values, marker=".", label=f"val {key}")
    ax_val.set(xlabel="epoch", ylabel="dataset unit (LVE/EVE: unit²)", yscale="log", title="validation metrics")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
