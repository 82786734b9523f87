"""mmtalker: speech-driven 3D facial animation.

The public API is re-exported here as the pieces land; see README.md.
"""

__version__ = "0.1.0"

from mmtalker.errors import MMTalkerError

__all__ = ["MMTalker", "MMTalkerError", "__version__"]


def __getattr__(name: str):
    """``mmtalker.MMTalker`` is imported on first use, so ``mmtalker --help`` does not load torch."""
    if name == "MMTalker":
        from mmtalker.inference.api import MMTalker

        return MMTalker
    raise AttributeError(f"module 'mmtalker' has no attribute {name!r}")
