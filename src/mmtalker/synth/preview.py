"""A contact sheet of one sequence: rendered frames with the phone under each.

The frames are chosen to show that the motion follows the speech: the centre of a bilabial (lips shut),
the centre of an open vowel (jaw open), the frame where the eyelids are closest (a blink), and evenly
spaced frames in between. Each tile is labelled with its time, the phone being spoken and why it was
picked. The camera frames the face from brows to chin, so the mouth and eyes are large enough to judge.
By default the sequence is the first test sequence with a blink inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.render.compose import label_font
from mmtalker.synth.visemes import PAUSE, kind_of

# iBUG 68 (0-based): upper and lower lid points of the right (36-41) and left (42-47) eye.
_LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
FRAMED = np.r_[8, 17:68]
"""Landmarks the camera frames: the chin, brows, eyes, nose and mouth (not the jaw's sides)."""
TILE = 256
LABEL_HEIGHT = 44


def eyelid_gap(vertices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(T,) mean distance between upper and lower lid landmarks, from (T, V, 3) positions."""
    pairs = np.array(_LIDS)
    upper, lower = vertices[:, landmarks[pairs[:, 0]]], vertices[:, landmarks[pairs[:, 1]]]
    return np.linalg.norm(upper - lower, axis=-1).mean(axis=1)


def phone_at(phones: list[dict], t: float) -> dict | None:
    """The alignment entry spoken at ``t`` seconds."""
    for p in phones:
        if p["start"] <= t < p["end"]:
            return p
    return phones[-1] if phones and t >= phones[-1]["end"] else None


def choose_frames(phones: list[dict], lid_gap: np.ndarray, fps: float, count: int) -> list[tuple[int, str]]:
    """(frame, reason) pairs sorted by frame: a bilabial, an open vowel, a blink, then evenly spaced ones."""
    num_frames = len(lid_gap)

    def centre(p):
        return min(num_frames - 1, int(round(0.5 * (p["start"] + p["end"]) * fps)))

    picks: dict[int, str] = {}
    for kind, reason in (("bilabial", "lips closed"), ("open_vowel", "jaw open"), ("labiodental", "lip to teeth")):
        hits = [p for p in phones if kind_of(p["symbol"]) == kind]
        if hits:  # the longest one: its centre shows the shape best
            picks.setdefault(centre(max(hits, key=lambda p: p["end"] - p["start"])), reason)
    blink = int(np.argmin(lid_gap))
    if lid_gap[blink] < 0.6 * np.median(lid_gap):
        picks[blink] = "blink"
    frames = np.arange(num_frames)
    while len(picks) < min(count, num_frames):  # fill with the frame farthest from every pick
        far = np.min(np.abs(frames[:, None] - np.array(list(picks) or [num_frames // 2])[None, :]), axis=1)
        picks[int(np.argmax(far)) if picks else num_frames // 2] = ""
    return sorted(picks.items())


def contact_sheet(images: list[np.ndarray], labels: list[str], title: str, columns: int = 5):
    """A PIL image: the (H, W, 3) uint8 tiles in a grid, each with its (two-line) label under it."""
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    columns = min(columns, len(images))
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, 30 + rows * (h + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), title, fill="black", font=label_font(16))
    font = label_font(14)
    for i, (img, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * w, 30 + (i // columns) * (h + LABEL_HEIGHT)
        sheet.paste(Image.fromarray(img), (x, y))
        draw.multiline_text((x + 6, y + h + 3), label, fill="black", font=font, spacing=2)
    return sheet


def _pick_sequence(ds, key: str | None):
    if key is not None:
        for seq in ds.sequences():
            if seq.key == key:
                return seq
        raise MMTalkerError(f"--sequence {key}", "no such sequence in the dataset", "keys look like subject01_sentence33")
    test = ds.sequences("test") if "test" in ds.manifest.splits else []
    seqs = test + [s for s in ds.sequences() if s not in test]
    if not seqs:
        raise MMTalkerError(ds.manifest.name, "the dataset has no sequences")
    blinks = ds.manifest.extra.get("blinks", {})
    for seq in seqs:  # test sequences first; the first with a blink inside the clip, so that the sheet shows one
        if any(0.1 < b < seq.duration - 0.3 for b in blinks.get(seq.key, [])):
            return seq
    return seqs[0]


def _landmarks(root: Path, manifest) -> np.ndarray:
    spec = manifest.extra.get("landmarks")
    if not spec:
        raise MMTalkerError(root / "manifest.json", "has no 68 landmarks (extra.landmarks)",
                            "preview needs a dataset made by 'mmtalker data synth'")
    return np.loadtxt(root / spec["file"], dtype=np.int64).reshape(-1)


def write_preview(dataset: str | os.PathLike, out: str | os.PathLike, *, sequence: str | None = None,
                  num_frames: int = 10, overwrite: bool = False) -> Path:
    """Render ``num_frames`` frames of one sequence of ``dataset`` into the PNG ``out``; returns its path."""
    from mmtalker.data.dataset import open_dataset
    from mmtalker.render.renderer import MeshRenderer, fit_camera

    out, root = Path(out), Path(dataset)
    if out.suffix.lower() != ".png":
        raise MMTalkerError(out, "the preview is a PNG", "give a path ending in .png")
    if out.exists() and not overwrite:
        raise MMTalkerError(out, "already exists", "pass --overwrite to replace it")
    if num_frames < 3:
        raise MMTalkerError(f"--frames {num_frames}", "a contact sheet needs at least 3 frames")
    ds = open_dataset(root)
    seq = _pick_sequence(ds, sequence)
    verts, phones = seq.vertices(), seq.alignment() or [{"symbol": PAUSE, "start": 0.0, "end": seq.duration}]
    landmarks = _landmarks(root, ds.manifest)
    template = ds.template(seq.subject)
    picks = choose_frames(phones, eyelid_gap(verts, landmarks), seq.fps, num_frames)
    renderer = MeshRenderer(ds.topology().faces, width=TILE, height=TILE,
                            camera=fit_camera(template[landmarks[FRAMED]], margin=1.2))
    images, labels = [], []
    for k, reason in picks:
        images.append(renderer.render(verts[k]))
        p = phone_at(phones, k / seq.fps)
        sym = "(silence)" if p is None or p["symbol"] == PAUSE else f"/{p['symbol']}/"
        labels.append(f"{k / seq.fps:.2f} s  {sym}\n{reason}")
    renderer.release()
    sheet = contact_sheet(images, labels, f"{seq.key}  ({seq.fps:g} fps, {verts.shape[0]} frames)")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
