"""Checks of option values shared by the subcommands: a bad value is one clear MMTalkerError line."""

from __future__ import annotations

import math
import os
from pathlib import Path

from mmtalker.errors import MMTalkerError


def require_positive(option: str, value: float | None) -> float | None:
    """``value`` unchanged when it is None or a finite number > 0; otherwise an error naming ``option``."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise MMTalkerError(option, f"must be a positive number, got {value:g}")
    return value


def add_device_option(parser, what: str = "the network and speech encoder") -> None:
    """``--device`` (checked when the model loads, by ``mmtalker.devices.resolve_device``)."""
    parser.add_argument("--device", default="cpu", help=f"where {what} run: cpu (default), cuda, cuda:N or auto")


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def _check_writable_place(path: Path, option: str) -> None:
    """``path``'s nearest existing folder must be a folder we may write into."""
    place = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not place.is_dir():
        raise MMTalkerError(path, f"cannot be written: {place} is a file, not a folder", f"choose another {option}")
    if not os.access(place, os.W_OK | os.X_OK):
        raise MMTalkerError(path, f"cannot be written: no permission to write into {place}", f"choose another {option}")


def check_output_file(path: Path | None, overwrite: bool, option: str = "--out") -> None:
    """An output file the command will write, checked before any work: not a folder, not an existing file unless
    ``overwrite``, and in a place that can be written."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise MMTalkerError(path, "is a folder", f"give {option} a file name")
    if path.exists() and not overwrite:
        raise MMTalkerError(path, "already exists", "pass --overwrite to replace it")
    _check_writable_place(path, option)


def check_output_folder(path: Path | None, option: str = "--out") -> None:
    """An output folder the command will write into, checked before any work: not an existing file, and in a
    place that can be written (whether an existing folder's contents may be replaced is the command's own check)."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MMTalkerError(path, "is a file, not a folder", f"give {option} a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise MMTalkerError(path, "cannot be written: no permission to write into it", f"choose another {option}")
        return
    _check_writable_place(path, option)


MAX_PIXELS = 4096
"""Largest panel side in pixels: the offscreen renderer's framebuffer limit is near it on common drivers."""


def require_pixels(option: str, value: int | None) -> int | None:
    """A panel size in pixels: None, or an integer from 16 to :data:`MAX_PIXELS`."""
    if value is not None and not 16 <= value <= MAX_PIXELS:
        raise MMTalkerError(option, f"must be from 16 to {MAX_PIXELS} pixels, got {value}")
    return value


def frames_text(count: int) -> str:
    """"1 frame", "153 frames"."""
    return f"{count} frame{'' if count == 1 else 's'}"
