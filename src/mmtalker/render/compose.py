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


def colour_bar(width: int, vmax: float, label: str) -> np.ndarray:
    """A white band (H, ``width``, 3) uint8 with the 'turbo' scale of :func:`error_colors` from 0 to ``vmax``,
    its ends and middle labelled, and ``label`` (what the colours measure, with its unit) beside it, or under it,
    word-wrapped, when the band is too narrow for both; the height is even, so the band can sit under h264 frames."""
    from matplotlib import colormaps

    font = label_font(11)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    beside = measure.textlength(label, font=font) + 12 <= min(width // 2, width - 170)  # and a bar of 150 px
    lines = [label] if beside else _wrap(label, width - 20, font, measure)
    height = 40 if beside else 38 + 13 * len(lines) + 4
    height += height % 2
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x0 = 10
    x1 = max(width - int(draw.textlength(label, font=font)) - 22, 60) if beside else max(width - 10, x0 + 20)
    ramp = colormaps["turbo"](np.linspace(0, 1, x1 - x0))[:, :3]
    bar = (np.repeat(ramp[None], 12, axis=0) * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (x0, 6))
    for frac in (0.0, 0.5, 1.0) if x1 - x0 >= 100 else (0.0, 1.0):  # a short bar has no room for the middle
        text = "0" if frac == 0 else f"{vmax * frac:.3g}"
        tw = draw.textlength(text, font=font)
        x = x0 + frac * (x1 - x0)
        draw.line([(x, 18), (x, 21)], fill="black")
        draw.text((min(max(x - tw / 2, 0), width - tw), 22), text, fill="black", font=font)
    if beside:
        draw.text((x1 + 8, 6), label, fill="black", font=font)
    else:
        for i, line in enumerate(lines):
            draw.text(((width - draw.textlength(line, font=font)) / 2, 38 + 13 * i), line, fill="black", font=font)
    return np.asarray(canvas)


def _wrap(text: str, width: float, font, draw) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels, broken at spaces (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


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
    unit: str | None = None,
) -> Iterator[np.ndarray]:
    """Yields one composite frame per time step: each animation (T_i, V, 3) rendered side by side.

    With ``heatmap_against`` (T, V, 3), every panel but the reference itself is coloured by its
    per-vertex error against it (scale 0..``vmax``, by default the 99th percentile of all errors), and a
    :func:`colour_bar` under the panels gives the scale (in ``unit``, the meshes' length unit, when given).
    Animations of slightly different lengths are cut to the shortest.
    """
    length = min(len(a) for a in animations)
    camera = fit_camera(animations[0][0])
    renderer = MeshRenderer(faces, width=width, height=height, camera=camera)
    if heatmap_against is not None and vmax is None:
        errs = [np.linalg.norm(a[:length] - heatmap_against[:length], axis=-1) for a in animations]
        vmax = float(np.percentile(np.concatenate([e.ravel() for e in errs]), 99)) or 1e-6
    bar = None
    if heatmap_against is not None:
        bar = colour_bar(width * len(animations), vmax, f"error ({unit})" if unit else "error (mesh units)")
    try:
        for t in range(length):
            panels = []
            for k, anim in enumerate(animations):
                colors = None
                if heatmap_against is not None and anim is not heatmap_against:
                    colors = error_colors(anim[t], heatmap_against[t], vmax)
                image = renderer.render(anim[t], colors)
                panels.append(caption(image, captions[k]) if captions else image)
            frame = np.concatenate(panels, axis=1)
            yield frame if bar is None else np.concatenate([frame, bar], axis=0)
    finally:
        renderer.release()
