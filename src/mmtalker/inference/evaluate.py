"""A checkpoint of any model kind as a prediction source for ``mmtalker evaluate``.

For each test sequence the model animates the sequence's audio on the subject's own template
(``dataset.template(subject)``), in the subject's style when the checkpoint was trained on that subject.
For subjects it has not seen (the usual case: VOCASET and BIWI test subjects are held out) it uses the
*mean* of the training subjects' style embeddings — one fixed style, decided before seeing any test
result. (Peers differ here: FaceFormer and CodeTalker report the average over all training styles of
their scores, or pick one; averaging the embedding gives one prediction per sequence at a 1/S cost.)
``unseen_styles="all"`` scores those papers' way instead: one prediction per training style, each counted as
a sequence of its own, as their ``_condition_<style>`` files are.

Sequences longer than a window are animated in overlapping windows (:mod:`mmtalker.inference.windows`),
20 s with 3 s crossfades unless the caller says otherwise, whatever the model kind.

The prediction has exactly ``seq.num_frames`` frames at the sequence's rate: the model runs at its own
fps (audio shorter than the motion is padded with silence) and is resampled when the rates differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.inference.windows import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S


UNSEEN_STYLES = ("mean", "all")
"""How a subject the checkpoint did not train on is animated: in the mean style, or once in every training style."""


def checkpoint_predictor(ckpt_dir, dataset, *, window_s: float = DEFAULT_WINDOW_S, overlap_s: float = DEFAULT_OVERLAP_S,
                         unseen_styles: str = "mean", device: str = "cpu"):
    """Returns ``(name, predict)`` with ``predict(seq) -> [pred (T, V, 3) float32, ...]`` for ``dataset``'s sequences:
    one prediction, or with ``unseen_styles="all"`` one per training style for a subject outside them; the
    network runs on ``device``."""
    if unseen_styles not in UNSEEN_STYLES:
        raise MMTalkerError("unseen styles", f"{unseen_styles!r} is not one of {', '.join(UNSEEN_STYLES)}")
    from mmtalker.data.fps import num_frames as frames_at_rate, resample_frames
    from mmtalker.inference.api import MMTalker

    ckpt_dir = Path(ckpt_dir)
    talker = MMTalker.from_pretrained(ckpt_dir, device=device)
    V = dataset.manifest.num_vertices
    topology = None
    if V != talker.num_vertices and talker.kind != "mmtalker":
        raise MMTalkerError(ckpt_dir, f"predicts {talker.num_vertices} vertices, the dataset has {V}",
                            "the peers work on their training topology only")
    if V != talker.num_vertices:  # another resolution of the same face: retarget through UV
        topology = dataset.topology()
    label = "MMTalker" if talker.kind == "mmtalker" else type(talker.model).__name__
    name = f"{label} ({ckpt_dir.name})" if ckpt_dir.name else label

    def one(seq, style, face) -> np.ndarray:
        T_model = frames_at_rate(seq.num_frames, seq.fps, talker.fps)
        pred = talker.animate(seq.audio(), style=style, template=face, num_frames=T_model, window_s=window_s, overlap_s=overlap_s)
        if T_model != seq.num_frames or talker.fps != seq.fps:
            pred = resample_frames(pred, talker.fps, seq.fps)[: seq.num_frames]
            if len(pred) < seq.num_frames:  # rounding: hold the last frame
                pred = np.concatenate([pred, np.repeat(pred[-1:], seq.num_frames - len(pred), 0)])
        return pred.astype(np.float32, copy=False)

    def predict(seq) -> list[np.ndarray]:
        template = np.asarray(dataset.template(seq.subject), np.float32)
        if template.shape != (V, 3):
            raise MMTalkerError(f"template of {seq.subject}", f"has shape {template.shape}, the dataset {V} vertices")
        face = template if topology is None else topology.copy_with(vertices=template)
        if seq.subject in talker.styles:
            styles = [seq.subject]
        else:
            styles = list(talker.styles) if unseen_styles == "all" and talker.styles else [None]
        return [one(seq, style, face) for style in styles]

    return name, predict
