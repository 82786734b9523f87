"""Which torch device a ``--device`` / ``optim.device`` string names, checked against this machine."""

from __future__ import annotations

from mmtalker.errors import MMTalkerError


def resolve_device(device) -> str:
    """``device`` checked: ``cpu``, ``cuda``, ``cuda:N`` (a GPU this machine has) or ``auto`` (cuda if any, else cpu).

    A ``torch.device`` is read as its name. Raises MMTalkerError for anything else and for a GPU this machine lacks.
    """
    import torch

    if not isinstance(device, (str, torch.device)):
        raise MMTalkerError("device", f"expected a string (cpu, cuda, cuda:N or auto), got {type(device).__name__} {device!r}")
    text = str(device)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text != "cpu" and not (text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit())):
        raise MMTalkerError(f"device {text!r}", "is not one of cpu, cuda, cuda:N, auto")
    if text.startswith("cuda"):
        index = int(text[5:]) if ":" in text else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise MMTalkerError(f"device {text!r}", "is not available on this machine (no CUDA GPU with that index)",
                                "use --device cpu")
    return text
