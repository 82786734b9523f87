"""Checks of option values shared by the subcommands: a bad value is one clear MMTalkerError line."""

from __future__ import annotations

import math

from mmtalker.errors import MMTalkerError


def require_positive(option: str, value: float | None) -> float | None:
    """``value`` unchanged when it is None or a finite number > 0; otherwise an error naming ``option``."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise MMTalkerError(option, f"must be a positive number, got {value:g}")
    return value


def add_device_option(parser, what: str = "the network and speech encoder") -> None:
    """``--device`` (checked when the model loads, by ``mmtalker.devices.resolve_device``)."""
    parser.add_argument("--device", default="cpu", help=f"where {what} run: cpu (default), cuda, cuda:N or auto")
