"""Where mmtalker keeps things it fetches once (the default face): ``$MMTALKER_HOME`` or ``~/.cache/mmtalker``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("MMTALKER_HOME")
    path = Path(root) if root else Path.home() / ".cache" / "mmtalker"
    if path.exists() and not path.is_dir():
        from mmtalker.errors import MMTalkerError

        raise MMTalkerError(path, "is a file, not a folder" + (" (MMTALKER_HOME)" if root else ""),
                            "mmtalker keeps its cache (speech features, the default face) in a folder there")
    path.mkdir(parents=True, exist_ok=True)
    return path
