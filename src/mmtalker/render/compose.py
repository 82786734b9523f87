"""Frames for people: several animations side by side with captions, and per-vertex error heatmaps."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmtalker.render.renderer import MeshRenderer, fit_camera


def error_colors(pred: np.ndarray, gt: np.ndarray, vmax: float) -> np.ndarray:
    """Per-vertex colours (V, 3) in [0, 1] of the L2 error |pred − gt| on matplotlib's 'turbo' scale up to ``vmax``."""
    from matplotlib import colormaps

    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    return colormaps["turbo"](np.clip(err / max(vmax, 1e-12), 0, 1))[:, :3].astype(np.float32)


def label_font(size: int):
    """matplotlib's DejaVu Sans (it has the IPA glyphs phone labels need), else Pillow's default font."""
    from pathlib import Path

    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size=size)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """The image with ``text`` written on a white band above it."""
    h, w = image.shape[:2]
    band = max(18, h // 14)
    band += band % 2  # keep frame sizes even for h264
    canvas = Image.new("RGB", (w, h + band), "white")
    canvas.paste(Image.fromarray(image), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = label_font(max(10, int(band * 0.7)))
    tw = draw.textlength(text, font=font)
    draw.text(((w - tw) / 2, band * 0.1), text, fill="black", font=font)
    return np.asarray(canvas)


def side_by_side_frames(
    animations: Sequence[np.ndarray], faces: np.ndarray, *, captions: Sequence[str] | None = None,
    width: int = 384, height: int = 384, heatmap_against: np.ndarray | None = None, vmax: float | None = None,
) -> Iterator[np.ndarray]:
    """Yields one composite frame per time step: each animation (T_i, V, 3) rendered side by side.

    With ``heatmap_against`` (T, V, 3), every panel but the reference itself is coloured by its
    per-vertex error against it (scale 0..``vmax``, by default the 99th percentile of all errors).
    Animations of slightly different lengths are cut to the shortest.
    """
    length = min(len(a) for a in animations)
    camera = fit_camera(animations[0][0])
    renderer = MeshRenderer(faces, width=width, height=height, camera=camera)
    if heatmap_against is not None and vmax is None:
        errs = [np.linalg.norm(a[:length] - heatmap_against[:length], axis=-1) for a in animations]
        vmax = float(np.percentile(np.concatenate([e.ravel() for e in errs]), 99)) or 1e-6
    try:
        for t in range(length):
            panels = []
            for k, anim in enumerate(animations):
                colors = None
                if heatmap_against is not None and anim is not heatmap_against:
                    colors = error_colors(anim[t], heatmap_against[t], vmax)
                image = renderer.render(anim[t], colors)
                panels.append(caption(image, captions[k]) if captions else image)
            yield np.concatenate(panels, axis=1)
    finally:
        renderer.release()
