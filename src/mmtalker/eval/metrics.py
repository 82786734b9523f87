"""The community's metrics for speech-driven 3D facial animation, defined once.

All functions take vertex arrays of shape (T, V, 3) in the dataset's length unit (metres for VOCASET
and the synthetic benchmark, millimetres for BIWI) and return values in that unit *squared* (LVE, EVE,
FDD) or in that unit (MVE). Scaling for reports (×10⁵ on VOCASET, ×10⁴ on BIWI) is the report's job.

- LVE (lip vertex error): for each frame the maximum over lip vertices of the squared L2 distance
  between prediction and truth (no square root), averaged over frames. Over a test set the average is
  over *all frames of all sequences* (frame-weighted), as FaceFormer and CodeTalker compute it.
- EVE (eye vertex error): the same over the eye-region vertices.
- FDD (upper-face dynamics deviation): per sequence, for each upper-face vertex the standard deviation
  over time of ||x_t − template||², averaged over those vertices; truth minus prediction (signed, so a
  model whose upper face moves too little scores positive). Over a test set: the mean over sequences.
- MVE (mean vertex error): the mean over frames and all vertices of the L2 distance (not squared).

When prediction and truth differ in length by a frame or two (rounding of fps), both are cut to the
shorter, as the peers do; a larger mismatch is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_FRAME_MISMATCH = 2  # frames; more than this means the two sequences do not belong together


def _aligned(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[2] != 3 or gt.shape[2] != 3:
        raise ValueError(f"expected vertex arrays of shape (T, V, 3), got {pred.shape} and {gt.shape}")
    if pred.shape[1] != gt.shape[1]:
        raise ValueError(f"prediction has {pred.shape[1]} vertices but the truth has {gt.shape[1]}")
    if abs(pred.shape[0] - gt.shape[0]) > MAX_FRAME_MISMATCH:
        raise ValueError(f"prediction has {pred.shape[0]} frames but the truth has {gt.shape[0]}")
    t = min(pred.shape[0], gt.shape[0])
    if t == 0:
        raise ValueError("cannot score an empty sequence (0 frames)")
    return pred[:t], gt[:t]


def _indices(idx, num_vertices: int) -> np.ndarray:
    idx = np.unique(np.asarray(idx, dtype=np.int64).ravel())
    if idx.size == 0:
        raise ValueError("the region is empty")
    if idx[0] < 0 or idx[-1] >= num_vertices:
        raise ValueError(f"region indices must lie in [0, {num_vertices}), got {idx[0]}..{idx[-1]}")
    return idx


def region_max_sq_error(pred, gt, region) -> np.ndarray:
    """Per frame, the max over ``region`` vertices of the squared L2 error. Returns shape (T,)."""
    pred, gt = _aligned(pred, gt)
    idx = _indices(region, gt.shape[1])
    sq = np.sum((pred[:, idx] - gt[:, idx]) ** 2, axis=-1)  # (T, K)
    return sq.max(axis=1)


def lve(pred, gt, lip_idx) -> float:
    """Lip vertex error of one sequence: mean over frames of the max squared lip-vertex error."""
    return float(region_max_sq_error(pred, gt, lip_idx).mean())


def eve(pred, gt, eye_idx) -> float:
    """Eye vertex error of one sequence: mean over frames of the max squared eye-region error."""
    return float(region_max_sq_error(pred, gt, eye_idx).mean())


def upper_face_dynamics(vertices, template, upper_idx) -> float:
    """Mean over upper-face vertices of the std over time of ||x_t − template||² (one sequence)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    template = np.asarray(template, dtype=np.float64)
    if template.shape != vertices.shape[1:]:
        raise ValueError(f"template has shape {template.shape}, expected {vertices.shape[1:]}")
    idx = _indices(upper_idx, vertices.shape[1])
    sq = np.sum((vertices[:, idx] - template[idx]) ** 2, axis=-1)  # (T, K)
    return float(sq.std(axis=0).mean())


def fdd(pred, gt, template, upper_idx) -> float:
    """Upper-face dynamics deviation of one sequence: truth's dynamics minus the prediction's (signed)."""
    pred, gt = _aligned(pred, gt)
    return upper_face_dynamics(gt, template, upper_idx) - upper_face_dynamics(pred, template, upper_idx)


def mve(pred, gt) -> float:
    """Mean vertex error of one sequence: mean L2 distance over all frames and vertices."""
    pred, gt = _aligned(pred, gt)
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


@dataclass
class MetricAccumulator:
    """Scores many sequences by the protocol: LVE/EVE/MVE frame-weighted, FDD averaged over sequences.

    Args:
        lip_idx, eye_idx, upper_idx: vertex index arrays of the three regions (any may be None to skip
            that metric).
    """

    lip_idx: np.ndarray | None = None
    eye_idx: np.ndarray | None = None
    upper_idx: np.ndarray | None = None
    _scores: list = field(default_factory=list)  # each added sequence's own scores

    def add(self, pred, gt, template=None) -> dict:
        """Adds one sequence (T, V, 3); returns that sequence's own scores."""
        pred, gt = _aligned(pred, gt)
        scores = {"frames": gt.shape[0], "mve": mve(pred, gt)}
        if self.lip_idx is not None:
            scores["lve"] = lve(pred, gt, self.lip_idx)
        if self.eye_idx is not None:
            scores["eve"] = eve(pred, gt, self.eye_idx)
        if self.upper_idx is not None and template is not None:
            scores["fdd"] = fdd(pred, gt, template, self.upper_idx)
        self._scores.append(scores)
        return scores

    def result(self) -> dict:
        """The protocol's numbers over everything added: lve, eve, mve, fdd, fdd_abs, frames, sequences."""
        return combine_sequences(self._scores)


def combine_sequences(scores: list[dict]) -> dict:
    """Per-sequence scores (each with ``frames``) combined by the protocol, the one place its rule lives: LVE, EVE
    and MVE weighted by frames (over the sequences that have them), FDD and |FDD| the mean over sequences."""
    frames = sum(s["frames"] for s in scores)
    if frames == 0:
        raise ValueError("no sequences were scored")
    out = {"frames": int(frames), "sequences": len(scores)}
    for key in ("lve", "eve", "mve"):
        if any(key in s for s in scores):
            out[key] = sum(s[key] * s["frames"] for s in scores) / frames
    fdds = [s["fdd"] for s in scores if "fdd" in s]
    if fdds:
        out["fdd"] = float(np.mean(fdds))
        out["fdd_abs"] = float(np.mean(np.abs(fdds)))
    return out
