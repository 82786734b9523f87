"""A landmark-placed articulation rig: channel curves in [0, 1] → per-frame vertex positions.

The rig is a sum of smooth displacement fields (see :mod:`mmtalker.synth.rig_fields`), each a fixed
per-vertex weight times a per-frame 3-vector::

    positions[t, v] = rest[v] + Σ_k basis[v, k] · coeff[t, k, :]

so that ``deform`` is one matrix product for all frames. The channels:

* ``jaw_open``: the jaw, chin and lower lip rotate about a hinge in front of the ears; 1 opens the
  lips by :attr:`RigParams.jaw_opening` at the midline (the rotation is exact per frame, written
  as a 3×3 matrix acting on three basis fields ``w·(v - hinge)``).
* ``lip_round``: lips forward and corners in; ``lip_spread``: corners out and back.
* ``brow_raise``: brows up, the forehead with them, fading to nothing at the eyes.
* ``lower_lip_tuck``: per frame, the lower inner lip is pulled from wherever the other channels put
  it to the upper teeth line (a little below and behind the upper inner lip at rest), for f and v.
* ``lip_close``: per frame, the lower lip takes back :attr:`RigParams.jaw_undo` of the jaw's rotation,
  then the remaining gap between the inner-lip pairs (61–67, 62–66, 63–65) is measured and closed,
  the lower lip doing :attr:`RigParams.lower_lip_share` of it; at 1 the pairs meet exactly, whatever
  the jaw does.
* ``blink_left`` / ``blink_right``: per frame, each upper-lid landmark is brought down to the point of
  the lower lid straight across the eye from it (subject's left eye: +x, landmarks 42–47; right:
  −x, 36–41), leaving :attr:`RigParams.blink_residual` of the gap so that the squeezed lid does not
  fold (on menpo3d's mesh a sliver or two beside an outer corner can still flip in the last tenth
  of a blink).

Units: metres. Amplitudes scale with ``s``, the outer eye-corner distance (landmarks 36–45).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtalker.synth import rig_fields as rf
from mmtalker.synth.mouth import edge_graph

CHANNELS = ("jaw_open", "lip_close", "lip_round", "lip_spread", "lower_lip_tuck", "blink_left", "blink_right", "brow_raise")


@dataclass(frozen=True)
class RigParams:
    """Amplitudes of the channels at 1, in units of ``s`` (the outer eye-corner distance, ≈ 0.095 m)."""

    jaw_opening: float = 0.18  # ≈ 17 mm between the inner lips at the midline
    hinge_drop: float = 0.25  # hinge below the jaw-outline tops (landmarks 0 and 16) ...
    hinge_back: float = 0.1  # ... and behind them, near the ear
    lower_lip_share: float = 0.7  # share of a closure done by the lower lip ...
    jaw_undo: float = 0.85  # ... after it has taken back this share of the jaw's rotation
    tuck_down: float = 0.02  # teeth line: below the upper inner lip ...
    tuck_back: float = 0.05  # ... and behind it
    round_forward: float = 0.065  # lips forward when rounded
    round_narrow: float = 0.3  # share of the mouth's width lost when rounded
    spread_widen: float = 0.16  # share of the mouth's width gained when spread
    spread_back: float = 0.035  # corners back when spread
    brow_lift: float = 0.045  # brows up
    blink_residual: float = 0.08  # share of the lid gap left when shut (keeps the squeezed lid from folding)


def _rotation_x(angles: np.ndarray) -> np.ndarray:
    """``(T,3,3)`` rotations about +x by ``angles`` (T,) radians (positive: the chin goes down and back)."""
    c, s = np.cos(angles), np.sin(angles)
    R = np.zeros((len(angles), 3, 3))
    R[:, 0, 0] = 1.0
    R[:, 1, 1], R[:, 1, 2] = c, -s
    R[:, 2, 1], R[:, 2, 2] = s, c
    return R


class FaceRig:
    """The rig of one face.

    Args:
        vertices: ``(V,3)`` rest positions, metres (+y up, +z toward the viewer).
        faces: ``(F,3)`` triangles; the mouth must be open (lips joined only at the corners).
        landmarks: ``(68,)`` vertex indices in iBUG order.
        params: amplitudes; the defaults give a human-sized range of motion.
    """

    def __init__(self, vertices, faces, landmarks, params: RigParams | None = None):
        self.rest = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.landmarks = np.asarray(landmarks, dtype=np.int64)
        if self.rest.ndim != 2 or self.rest.shape[1] != 3 or self.landmarks.shape != (68,):
            raise ValueError(f"FaceRig needs vertices (V,3) and 68 landmarks, got {self.rest.shape} and {self.landmarks.shape}")
        self.params = params or RigParams()
        p = self.rest[self.landmarks]
        self.scale = float(np.linalg.norm(p[45] - p[36]))
        self._build(edge_graph(self.rest, self.faces))

    def _build(self, graph) -> None:
        """Basis fields ``(V,K)`` and their column slices per role."""
        s, v, lm, prm = self.scale, self.rest, self.landmarks, self.params
        p = v[lm]
        self.hinge = np.array([p[27, 0], p[[0, 16], 1].mean() - prm.hinge_drop * s, p[[0, 16], 2].mean() - prm.hinge_back * s])
        jaw = self.jaw_weight = rf.jaw_weight(graph, v, lm, s)  # (V,) share of the jaw's rotation
        mask = rf.mouth_mask(graph, v, lm, s)
        centre_x = p[[60, 64], 0].mean()
        half_width = 0.5 * abs(p[64, 0] - p[60, 0])
        rel_x = v[:, 0] - centre_x
        upper, lower, lower_mask = rf.lip_fields(graph, v, lm, s)
        eyes = [rf.eyelid_fields(graph, v, lm, s, eye) for eye in ("left", "right")]
        columns = {
            "jaw": jaw[:, None] * (v - self.hinge),
            "jaw_undo": (lower_mask * jaw)[:, None] * (v - self.hinge),
            "width": (mask * rel_x)[:, None],
            "forward": mask[:, None],
            "corners_back": (mask * np.minimum((rel_x / half_width) ** 2, 1.5))[:, None],
            "brow": rf.brow_field(graph, v, lm, s)[:, None],
            "upper_lip": upper,
            "lower_lip": lower,
            "eye_left": eyes[0],
            "eye_right": eyes[1],
        }
        self.slices, start = {}, 0
        for name, block in columns.items():
            self.slices[name] = slice(start, start + block.shape[1])
            start += block.shape[1]
        self.basis = np.concatenate(list(columns.values()), axis=1)  # (V, K)
        self.jaw_angle = self._jaw_angle(jaw[self.landmarks[66]])
        self._lower_lids()

    def _lower_lids(self) -> None:
        """Per eye: the lower lid as a polyline (corners and lower-lid landmarks, in order along the eye),
        and the weights that give its point straight across from each upper-lid landmark."""
        self._eye_axis, self._lid_nodes, self._lid_weights = {}, {}, {}
        for eye, (upper, lower, (c0, c1)) in rf.EYES.items():
            p = self.rest[self.landmarks]
            axis = (p[c1] - p[c0]) / np.linalg.norm(p[c1] - p[c0])
            nodes = np.array([c0, *lower, c1])
            u = (p[nodes] - p[c0]) @ axis
            order = np.argsort(u)
            nodes, u = nodes[order], u[order]
            at = (p[list(upper)] - p[c0]) @ axis  # (K,) where each upper-lid landmark sits along the eye
            weights = np.stack([np.interp(at, u, np.eye(len(nodes))[j]) for j in range(len(nodes))], axis=1)  # (K, N)
            self._eye_axis[eye], self._lid_nodes[eye], self._lid_weights[eye] = axis, nodes, weights

    def _jaw_angle(self, weight: float) -> float:
        """Radians at ``jaw_open = 1``: the rotation that moves the lower midline lip (jaw ``weight``) by ``jaw_opening``."""
        r = np.linalg.norm(self.rest[self.landmarks[66]] - self.hinge)
        chord = self.params.jaw_opening * self.scale / max(weight, 0.5)
        return float(2.0 * np.arcsin(min(1.0, chord / (2.0 * r))))

    # ------------------------------------------------------------------------------------- deform

    def _curves(self, curves: dict) -> tuple[dict[str, np.ndarray], int]:
        unknown = set(curves) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown rig channels {sorted(unknown)}; the channels are {CHANNELS}")
        arrays = {k: np.asarray(c, dtype=np.float64).reshape(-1) for k, c in curves.items()}
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"rig curves differ in length: { {k: len(a) for k, a in arrays.items()} }")
        T = lengths.pop() if lengths else 0
        out = {k: np.clip(arrays.get(k, np.zeros(T)), 0.0, 1.0) for k in CHANNELS}
        return out, T

    def _at(self, coeff: np.ndarray, ids) -> np.ndarray:
        """Positions ``(T,len(ids),3)`` of vertices ``ids`` under coefficients ``coeff`` (T,K,3)."""
        ids = np.asarray(ids)
        return self.rest[ids][None] + np.einsum("nk,tkc->tnc", self.basis[ids], coeff)

    def coefficients(self, curves: dict) -> np.ndarray:
        """``(T,K,3)`` per-frame coefficients of the basis fields for the channel ``curves``."""
        c, T = self._curves(curves)
        s, prm, sl, lm = self.scale, self.params, self.slices, self.landmarks
        coeff = np.zeros((T, self.basis.shape[1], 3))
        # 1. jaw, lip shape, brows: fields with fixed directions
        rot = _rotation_x(self.jaw_angle * c["jaw_open"]) - np.eye(3)
        coeff[:, sl["jaw"], :] = rot.transpose(0, 2, 1)  # column j of (R - I) scales w·(v - hinge)_j
        coeff[:, sl["width"], 0] = (prm.spread_widen * c["lip_spread"] - prm.round_narrow * c["lip_round"])[:, None]
        coeff[:, sl["forward"], 2] = (prm.round_forward * s * c["lip_round"])[:, None]
        coeff[:, sl["corners_back"], 2] = (-prm.spread_back * s * c["lip_spread"])[:, None]
        coeff[:, sl["brow"], 1] = (prm.brow_lift * s * c["brow_raise"])[:, None]
        # 2. tuck: the lower inner lip to the teeth line, from where step 1 left it
        upper_ids, lower_ids = list(rf.UPPER_INNER_LIP), list(rf.LOWER_INNER_LIP)
        teeth = self.rest[lm[upper_ids]] + np.array([0.0, -prm.tuck_down * s, -prm.tuck_back * s])
        lower_now = self._at(coeff, lm[lower_ids])
        coeff[:, sl["lower_lip"], :] += c["lower_lip_tuck"][:, None, None] * (teeth[None] - lower_now)
        # 3. closure: the lower lip first takes back most of the jaw's rotation (vertex by vertex, so the lips
        #    meet all along, corners included), then what is left of the gap at the pairs is shared
        coeff[:, sl["jaw_undo"], :] = -(prm.jaw_undo * c["lip_close"])[:, None, None] * coeff[:, sl["jaw"], :]
        gap = self._at(coeff, lm[lower_ids]) - self._at(coeff, lm[upper_ids])  # (T,3,3)
        share = prm.lower_lip_share
        coeff[:, sl["upper_lip"], :] += c["lip_close"][:, None, None] * (1.0 - share) * gap
        coeff[:, sl["lower_lip"], :] -= c["lip_close"][:, None, None] * share * gap
        # 4. blinks: each upper-lid landmark down to the lower lid straight across the eye from it
        #    (no sideways part: that would shear the squeezed lid into folds near the corners)
        for eye in ("left", "right"):
            target = np.einsum("kn,tnc->tkc", self._lid_weights[eye], self._at(coeff, lm[self._lid_nodes[eye]]))
            gap = target - self._at(coeff, lm[list(rf.EYES[eye][0])])
            axis = self._eye_axis[eye]
            gap -= (gap @ axis)[..., None] * axis
            coeff[:, sl[f"eye_{eye}"], :] += c[f"blink_{eye}"][:, None, None] * (1.0 - prm.blink_residual) * gap
        return coeff

    def deform(self, curves: dict) -> np.ndarray:
        """Vertex positions for channel curves.

        Args:
            curves: channel name → ``(T,)`` values in [0, 1] (clipped); missing channels are 0.

        Returns:
            ``(T,V,3)`` float32 positions, metres.
        """
        coeff = self.coefficients(curves)
        T, K, _ = coeff.shape
        V = len(self.rest)
        flat = self.basis.astype(np.float32) @ coeff.transpose(1, 0, 2).reshape(K, T * 3).astype(np.float32)  # (V, T*3)
        return (flat.reshape(V, T, 3).transpose(1, 0, 2) + self.rest.astype(np.float32)[None]).astype(np.float32, copy=False)

    # ------------------------------------------------------------------------------------ measures

    def inner_lip_gap(self, positions: np.ndarray) -> np.ndarray:
        """``(T,)`` metres: mean distance of the inner-lip pairs 61–67, 62–66, 63–65 in ``positions`` (T,V,3)."""
        up = positions[:, self.landmarks[list(rf.UPPER_INNER_LIP)]]
        low = positions[:, self.landmarks[list(rf.LOWER_INNER_LIP)]]
        return np.linalg.norm(up - low, axis=-1).mean(axis=1)

    def eyelid_gap(self, positions: np.ndarray) -> np.ndarray:
        """``(T,2)`` metres: mean distance of the upper-lid landmarks to the lower lid, subject's left and right eye.

        The lower lid is the polyline through the eye's corners and its lower-lid landmarks
        (36, 41, 40, 39 for the right eye; 42, 47, 46, 45 for the left).
        """
        out = []
        for eye in ("left", "right"):
            lid = positions[:, self.landmarks[self._lid_nodes[eye]]]  # (T, N, 3)
            points = positions[:, self.landmarks[list(rf.EYES[eye][0])]]  # (T, K, 3)
            out.append(_distance_to_polyline(points, lid).mean(axis=1))
        return np.stack(out, axis=1)


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """``(T,K)`` distance of ``points`` (T,K,3) to the polyline through ``line`` (T,N,3)."""
    a, b = line[:, None, :-1], line[:, None, 1:]  # (T,1,N-1,3)
    ab = b - a
    ap = points[:, :, None] - a  # (T,K,N-1,3)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-20), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(points[:, :, None] - closest, axis=-1).min(axis=2)
