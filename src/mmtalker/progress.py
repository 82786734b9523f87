"""Progress bars for long work: one place decides how they look and when they are hidden."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it", leave: bool = False, **kwargs):
    """A tqdm bar on stderr; hidden when ``MMTALKER_QUIET=1`` or when stderr is not a terminal in CI."""
    disable = os.environ.get("MMTALKER_QUIET") == "1" or (os.environ.get("CI") == "true" and not sys.stderr.isatty())
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, dynamic_ncols=True, **kwargs)
