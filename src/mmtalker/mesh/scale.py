"""One check shared by everything that pairs a face with another of the same topology: both in the same units."""

from __future__ import annotations

import numpy as np

from mmtalker.errors import MMTalkerError

MAX_SIZE_RATIO = 3.0
"""Two faces of one topology may differ in size by at most this factor: beyond it their units differ (mm against m),
and motion learnt, or errors scored, in one unit would mean nothing in the other."""


def check_same_scale(what, vertices: np.ndarray, reference: np.ndarray, reference_name: str, hint: str) -> None:
    """Refuse (MMTalkerError naming ``what``) ``vertices`` (V, 3) whose extent is more than :data:`MAX_SIZE_RATIO`
    times larger or smaller than ``reference``'s (``reference_name`` says what that is in the message)."""
    ours, theirs = float(np.ptp(vertices, axis=0).max()), float(np.ptp(reference, axis=0).max())
    ratio = ours / max(theirs, 1e-12)
    if not 1 / MAX_SIZE_RATIO <= ratio <= MAX_SIZE_RATIO:
        raise MMTalkerError(what, f"is {ratio:.3g}× the size of {reference_name} ({ours:.3g} against {theirs:.3g} across)",
                            hint)
