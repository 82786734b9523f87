"""mmtalker: speech-driven 3D facial animation.

The public API is re-exported here as the pieces land; see README.md.
"""

__version__ = "0.1.0"

from mmtalker.errors import MMTalkerError

__all__ = ["MMTalkerError", "__version__"]
