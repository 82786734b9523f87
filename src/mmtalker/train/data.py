"""Training data: audio features cached on disk, clips held as displacements, random training windows.

Speech-encoder features are the slow part of a step, and the encoder is frozen, so each clip's features
are computed once per (clip audio, encoder, fps, augmentation variant) and kept as ``.npy`` files in a
cache folder. Variant 0 is the clean audio; variants 1.. are augmented with ``mmtalker.audio.augment``
(fixed seeds, so a cache entry never goes stale). A speed change stretches the clip by a factor s: the
variant then has round(T·s) frames, and its frame t' shows the motion at original frame t'/s (linear
interpolation in time, done per window in ``make_batch``).

With a fine-tuned encoder (``model.audio_finetune``, :mod:`mmtalker.audio.finetune`) the features change as
the model trains, so a variant keeps instead the frozen hidden states that feed the tuned blocks (its
*prefix*, at the encoder's rate); :func:`tuned_features` turns it into features with the model's current
blocks, and :func:`make_batch` takes those (with their gradients) in place of cached ones.

Shapes: ``T`` frames, ``V`` vertices, ``C`` feature width, ``W`` window length.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmtalker.audio.augment import AugmentConfig, augment
from mmtalker.audio.encoders import features_at_fps
from mmtalker.audio.finetune import frozen_prefix
from mmtalker.errors import MMTalkerError
from mmtalker.progress import progress

CACHE_VERSION = 1  # bump when the way features are computed changes


# ------------------------------------------------------------------------------------------- feature cache
class FeatureCache:
    """Encoder features of whole clips as ``<root>/<hash>.npy`` (float16, (T, C)); writes are atomic."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha1(json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        path = self.root / f"{key}.npy"
        if not path.is_file():
            return None
        try:
            return np.load(path)
        except (ValueError, OSError):  # a damaged entry is recomputed, never trusted
            return None

    def put(self, key: str, features: np.ndarray) -> None:
        path = self.root / f"{key}.npy"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, features.astype(np.float16))
        os.replace(tmp, path)


def encode_clip(encoder, audio: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """(N,) 16 kHz audio -> (num_frames, C) float32 features at ``fps`` (frozen encoder, no gradients)."""
    with torch.no_grad():
        feats = encoder(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None])  # (1, Ta, C)
        return features_at_fps(feats, encoder.rate, fps, num_frames)[0].numpy()


# -------------------------------------------------------------------------------------------------- clips
@dataclass
class Variant:
    """One version of a clip's audio: features (T', C) at the mesh fps and its time-stretch factor; or, with a
    fine-tuned encoder, no features but the frozen ``prefix`` (Ta, K·D) at the encoder's rate and ``frames`` = T'."""

    features: np.ndarray | None
    stretch: float
    prefix: np.ndarray | None = None
    frames: int = 0

    @property
    def num_frames(self) -> int:
        return self.features.shape[0] if self.features is not None else self.frames


@dataclass
class Clip:
    """A training/validation clip. ``displacement()`` gives (T, V, 3) = vertices − subject template."""

    key: str
    subject: str
    subject_index: int  # style index, or -1 (UNSEEN_SUBJECT) for subjects absent from training
    template: np.ndarray  # (V, 3)
    sequence: object  # mmtalker.data Sequence (vertices() at the training fps)
    variants: list[Variant] = field(default_factory=list)
    _disp: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.variants[0].num_frames

    def displacement(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """(T, V, 3) vertices − template, or frames ``start:stop`` of it (read alone when not preloaded)."""
        if self._disp is not None:
            return self._disp[start:stop]
        frames = None if start is None and stop is None else slice(start, stop)
        verts = np.asarray(self.sequence.vertices(frames), dtype=np.float32)
        return verts - self.template

    def preload(self) -> None:
        self._disp = np.ascontiguousarray(self.displacement())


def _variant_features(seq, encoder, encoder_spec: str, fps: float, variant: int, aug: AugmentConfig, cache: FeatureCache,
                      prefix_states: list[int] | None = None):
    """Features of one clip variant (from the cache or computed now); with ``prefix_states``, the frozen
    hidden states a fine-tuned encoder's tuned blocks start from instead."""
    audio = seq.audio()
    num_frames = seq.num_frames
    digest = hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest()
    key = cache.key(audio=digest, encoder=encoder_spec, fps=fps, frames=num_frames, variant=variant, augment=repr(aug) if variant else None,
                    **({"prefix": prefix_states} if prefix_states else {}))
    stretch = 1.0
    if variant:
        rng = np.random.default_rng([variant, int(digest[:8], 16)])
        result = augment(audio, rng, aug)
        audio, stretch = result.audio, result.stretch
    feats = cache.get(key)
    frames = max(1, round(num_frames * stretch))
    if prefix_states:
        if feats is None or feats.shape[0] != encoder.num_frames_for(len(audio)):
            feats = frozen_prefix(encoder, torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None], prefix_states)[0].numpy()
            cache.put(key, feats)
        return Variant(features=None, stretch=stretch, prefix=np.asarray(feats, dtype=np.float16), frames=frames)
    if feats is None or feats.shape[0] != frames:
        feats = encode_clip(encoder, audio, fps, frames)
        cache.put(key, feats)
    return Variant(features=np.asarray(feats, dtype=np.float16), stretch=stretch)


def load_clips(dataset, sequences, subjects: list[str], encoder, encoder_spec: str, fps: float, *, variants: int,
               augment_config: AugmentConfig, cache: FeatureCache, desc: str, prefix_states: list[int] | None = None) -> list[Clip]:
    """Build Clips for ``sequences`` with ``variants`` augmented versions each (plus the clean one); with
    ``prefix_states`` (a fine-tuned encoder's :func:`mmtalker.audio.finetune.prefix_states`) each variant keeps
    those frozen hidden states instead of features."""
    clips = []
    templates: dict[str, np.ndarray] = {}
    for seq in progress(sequences, desc=desc, unit="clip"):
        if seq.subject not in templates:
            templates[seq.subject] = np.asarray(dataset.template(seq.subject), dtype=np.float32)
        clip = Clip(
            key=seq.key, subject=seq.subject, subject_index=subjects.index(seq.subject) if seq.subject in subjects else -1,
            template=templates[seq.subject], sequence=seq,
        )
        clip.variants = [_variant_features(seq, encoder, encoder_spec, fps, v, augment_config, cache, prefix_states)
                         for v in range(variants + 1)]
        clips.append(clip)
    return clips


def tuned_features(variant: Variant, blocks, fps: float, device=None) -> torch.Tensor:
    """A fine-tuned encoder's features of one variant: the tuned ``blocks`` (``model.audio_blocks``) run on its
    whole prefix, then resampled to the mesh fps: (T', C), with gradients into ``blocks`` when enabled."""
    prefix = torch.from_numpy(variant.prefix.astype(np.float32))[None]
    if device is not None:
        prefix = prefix.to(device)
    return features_at_fps(blocks(prefix), blocks.rate, fps, variant.frames)[0]


def variant_features(clip: Clip, v: int, model=None, device=None) -> torch.Tensor:
    """(T', C) float32 features of variant ``v`` of a clip: the cached ones, or, for a fine-tuned encoder, the
    ones ``model``'s tuned blocks make now."""
    var = clip.variants[v]
    if var.features is not None:
        out = torch.from_numpy(var.features.astype(np.float32))
        return out.to(device) if device is not None else out
    if model is None or getattr(model, "audio_blocks", None) is None:
        raise ValueError(f"clip {clip.key} holds a fine-tuned encoder's prefix: pass the model with its audio_blocks")
    return tuned_features(var, model.audio_blocks, model.config.fps, device)


def motion_scale(clips: list[Clip], max_clips: int = 64) -> float:
    """RMS of displacement coordinates over (up to ``max_clips``) clips: the model's output unit."""
    total, count = 0.0, 0
    for clip in clips[:max_clips]:
        d = clip.displacement()
        total += float(np.square(d, dtype=np.float64).sum())
        count += d.size
    scale = (total / max(count, 1)) ** 0.5
    if not np.isfinite(scale) or scale <= 0:
        raise MMTalkerError("training data", "the faces do not move (all displacements are zero)", "check the dataset's vertices and templates")
    return scale


# ------------------------------------------------------------------------------------------------ batches
def frames_at(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of x (T, …) at fractional frame positions (W,), clamped to [0, T-1]."""
    pos = np.clip(positions, 0.0, x.shape[0] - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, x.shape[0] - 1)
    w = (pos - i0).astype(np.float32).reshape(-1, *([1] * (x.ndim - 1)))
    out = x[i0] * (1 - w)  # in place from here: a BIWI window is 48 × 23370 × 3 floats per term
    out += x[i1] * w
    return out


@dataclass
class Batch:
    """A batch of windows. audio (B, W, C); disp (B, W, U, 3) displacements at ``vertex_ids`` (U,) (all
    vertices when None); mask (B, W) True on real frames; subject (B,) long; templates (B, V, 3);
    loss_mask (B, W) True on the frames the loss is taken on: the real frames, less the context frames
    around each window (``make_batch``'s ``context``)."""

    audio: torch.Tensor
    disp: torch.Tensor
    mask: torch.Tensor
    subject: torch.Tensor
    templates: torch.Tensor
    loss_mask: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True)
                       for t in (self.audio, self.disp, self.mask, self.subject, self.templates, self.loss_mask)))


@dataclass(frozen=True)
class Window:
    """One training window: ``variant`` of a clip from frame ``start``. With ``partner`` (another clip of
    the same subject, its own variant and start) the window is spliced: its frames from ``cut`` on are the
    partner's window's frames from ``cut`` on (see :func:`draw_windows`)."""

    variant: int
    start: int
    partner: tuple | None = None  # (Clip, variant, start)
    cut: int = 0


def draw_windows(clips: list[Clip], rng: np.random.Generator, window: int, splice_prob: float = 0.0,
                 cover_edges: bool = False) -> list[Window]:
    """For each clip, a random augmentation variant and the first frame of a window of ≤ ``window`` frames,
    drawn in clip order (``T`` below is the variant's frame count).

    By default the first frame is uniform over the ``T - W + 1`` places a whole window fits, so a clip's
    first (and last) frame is in 1 window of ``T - W + 1`` while a middle frame is in up to ``W`` of them:
    the leading and trailing silences, where a speaker closes the mouth and blinks, are barely trained.
    With ``cover_edges`` the start is drawn uniform in ``[-(W - 1), T - 1]`` (every window that overlaps
    the clip) and then moved inside the clip: windows stay ``W`` frames long and the first and last frames
    are in ``W / (T + W - 1)`` of them (a third or more when ``T ≤ 2W``) instead of ``1 / (T - W + 1)``.

    With probability ``splice_prob`` a window is spliced with another clip of the same subject among
    ``clips``: the first ``cut`` frames (cut uniform in [W/4, 3W/4]) come from this clip, the rest from that
    clip's own window. Spliced windows are sentences no recording holds, so the model cannot learn the
    training sentences by heart from their utterance-level context (both halves are real speech and motion
    of one speaker, so the template and style stay right).
    """
    picks = []
    for clip in clips:
        v = int(rng.integers(len(clip.variants)))
        T = clip.variants[v].num_frames
        if T <= window:
            start = 0
        elif cover_edges:
            start = min(max(int(rng.integers(-(window - 1), T)), 0), T - window)
        else:
            start = int(rng.integers(0, T - window + 1))
        picks.append(Window(v, start))
    if splice_prob <= 0:
        return picks
    out = []
    for i, (clip, pick) in enumerate(zip(clips, picks)):
        mates = [j for j, c in enumerate(clips) if j != i and c.subject == clip.subject]
        if not mates or rng.random() >= splice_prob:
            out.append(pick)
            continue
        j = mates[int(rng.integers(len(mates)))]
        cut = int(rng.integers(window // 4, 3 * window // 4 + 1))
        out.append(Window(pick.variant, pick.start, (clips[j], picks[j].variant, picks[j].start), cut))
    return out


def _window_frames(clip: Clip, v: int, start: int, window: int, vertex_ids, context: int = 0, features=None) -> tuple:
    """Features (n, C) and displacements (n, U, 3) of ``window`` frames of a clip's variant from ``start``,
    with up to ``context`` more frames of the clip on each side; also how many context frames come first.
    ``features``: the variant's whole (T', C) features to crop (a Tensor, for a fine-tuned encoder) instead of its cached ones."""
    var = clip.variants[v]
    feats = var.features if features is None else features
    T = var.num_frames
    first = max(0, start - context)
    frames = np.arange(first, min(T, start + window + context))
    positions = frames / var.stretch  # in the clip's own frames: a speed-changed variant reads between them
    lo = int(np.floor(positions[0]))
    hi = int(np.ceil(positions[-1])) + 1  # the frames interpolation reads (past the clip's end: clamped to it)
    disp = clip.displacement(lo, hi)  # those frames alone, not the whole clip
    if vertex_ids is not None:
        disp = disp[:, vertex_ids]
    target = frames_at(disp, positions - lo) if var.stretch != 1.0 else disp[: len(frames)]
    return feats[frames[0] : frames[-1] + 1], target, start - first


def make_batch(clips: list[Clip], windows: np.random.Generator | list[Window], window: int,
               vertex_ids: np.ndarray | None = None, context: int = 0, features: dict | None = None) -> Batch:
    """Windows (≤ ``window`` frames) of augmentation variants of ``clips``, zero-padded.

    ``windows`` is either a generator (a random variant and window per clip, as :func:`draw_windows`
    draws them, unspliced) or the :class:`Window` list already drawn: data-parallel training draws one
    global batch with a seed shared by the ranks and each rank builds its slice of it.

    ``context`` > 0 adds up to that many frames of the clip before and after each window, which the
    model sees but the loss does not (``Batch.loss_mask``): zero padding then marks only a clip's real
    start and end, never the edge of a crop inside a sentence, so the frames near a window's edges are
    trained with the context they have at inference. Spliced windows take no context.

    ``features`` maps ``(id(clip), variant)`` to that variant's whole (T', C) features as a Tensor (a fine-tuned
    encoder's, made by :func:`tuned_features` for every variant the windows use, partners included): the
    batch's audio is then cropped from them, gradients kept.
    """
    picks = draw_windows(clips, windows, window) if isinstance(windows, np.random.Generator) else windows
    if len(picks) != len(clips):
        raise ValueError(f"{len(picks)} windows for {len(clips)} clips")
    if context < 0:
        raise ValueError(f"context must be >= 0 frames, got {context}")
    lengths, items = [], []
    given = (lambda c, v: features[id(c), v]) if features is not None else (lambda c, v: None)
    for clip, pick in zip(clips, picks):
        if pick.partner is not None and context > 0:
            raise ValueError("spliced windows take no context frames")
        f, d, lead = _window_frames(clip, pick.variant, pick.start, window, vertex_ids, context, given(clip, pick.variant))
        if pick.partner is not None and pick.cut < len(f):
            mate, v2, start2 = pick.partner
            f2, d2, _ = _window_frames(mate, v2, start2, window, vertex_ids, 0, given(mate, v2))
            if pick.cut < len(f2):
                join = torch.cat if torch.is_tensor(f) else np.concatenate
                f, d = join([f[: pick.cut], f2[pick.cut :]]), np.concatenate([d[: pick.cut], d2[pick.cut :]])
        items.append((f, d, lead))
        lengths.append(len(f))
    W = max(lengths)
    B, U = len(clips), items[0][1].shape[1]
    disp = np.zeros((B, W, U, 3), np.float32)
    mask = np.zeros((B, W), bool)
    loss_mask = np.zeros((B, W), bool)
    for b, ((f, d, lead), n) in enumerate(zip(items, lengths)):
        disp[b, :n], mask[b, :n] = d, True
        loss_mask[b, lead : min(n, lead + window)] = True
    if features is not None:  # Tensors with gradients: padded, not copied into numpy
        audio = torch.stack([torch.nn.functional.pad(f.float(), (0, 0, 0, W - n)) for (f, _, _), n in zip(items, lengths)])
    else:
        audio = torch.from_numpy(np.stack([np.pad(f.astype(np.float32), ((0, W - n), (0, 0))) for (f, _, _), n in zip(items, lengths)]))
    return Batch(
        audio=audio, disp=torch.from_numpy(disp), mask=torch.from_numpy(mask),
        subject=torch.tensor([c.subject_index for c in clips], dtype=torch.long),
        templates=torch.from_numpy(np.stack([c.template for c in clips])),
        loss_mask=torch.from_numpy(loss_mask),
    )
