"""The Python API: ``MMTalker.from_pretrained(dir).animate("speech.wav")`` -> (T, V, 3) vertex positions.

Audio of any length is animated in overlapping windows (:mod:`mmtalker.inference.windows`); a template of
another resolution that shares the checkpoint's face is animated through the UV field
(:mod:`mmtalker.inference.retarget`); live audio goes through :meth:`MMTalker.stream`.

Styles: ``style=None`` uses the mean of the training subjects' style embeddings (the model's "unseen
subject" style); a name from :attr:`MMTalker.styles` uses that subject's.

A peer's checkpoint (VOCA, FaceFormer, CodeTalker) loads the same way and animates speech of any length on
its own topology (no retargeting to other resolutions, no streaming); :attr:`MMTalker.kind` says which.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mmtalker.audio.io import SAMPLE_RATE, load_audio, resample_audio
from mmtalker.devices import resolve_device
from mmtalker.errors import MMTalkerError
from mmtalker.inference.engine import Engine, PeerEngine, PreparedFace
from mmtalker.inference.retarget import build_retarget_map
from mmtalker.inference.windows import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S, audio_array, frames_for_window, iter_windowed
from mmtalker.mesh.align import (MAX_ANGLE_DEG, MAX_RESIDUAL_SHARE, MAX_SHIFT_SHARE, MIN_SIZE_RATIO, fit_residual,
                                 rigid_alignment)
from mmtalker.mesh.io import Mesh, load_mesh
from mmtalker.mesh.scale import check_same_scale

AudioLike = str | os.PathLike | np.ndarray
TemplateLike = str | os.PathLike | Mesh | np.ndarray | None


class MMTalker:
    """A trained MMTalker ready to animate. Build it with :meth:`from_pretrained` (or :meth:`from_model`)."""

    def __init__(self, model, encoder, *, extras: dict | None = None, source: str | None = None):
        from mmtalker.models.mmtalker import MMTalker as MMTalkerNet

        self.kind = "mmtalker" if isinstance(model, MMTalkerNet) else type(model).__name__.lower()
        self.engine = Engine(model, encoder) if self.kind == "mmtalker" else PeerEngine(model, encoder)
        self.model = self.engine.model
        self.extras = extras or {}
        self.source = source
        self._faces: dict[str | None, PreparedFace] = {}  # prepared default faces, by style

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, device: str = "cpu") -> MMTalker:
        """Load a checkpoint folder written by ``mmtalker train`` (model.safetensors + config.json), of
        MMTalker or of a peer, onto ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"``: the GPU when
        there is one; the speech encoder goes there too; outputs come back as numpy arrays whatever the device).

        Raises MMTalkerError when the folder is missing, not an mmtalker checkpoint, or truncated.
        """
        from mmtalker.models.registry import load_model

        if not isinstance(directory, (str, os.PathLike)):
            raise MMTalkerError("checkpoint", f"expected a folder path, got {type(directory).__name__}")
        directory = Path(directory)
        device = resolve_device(device)
        try:
            model, config, extras = load_model(directory, device=device)
        except MMTalkerError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:
            raise MMTalkerError(directory, f"cannot load this checkpoint ({type(exc).__name__}: {exc})",
                                "is it a folder written by 'mmtalker train'?") from None
        stages = int(getattr(model, "stages_trained", 2))  # CodeTalker: its VQ-VAE alone cannot animate speech
        if stages < 2:
            raise MMTalkerError(directory, f"holds a {type(model).__name__} trained to stage {stages} of 2 only",
                                "animate with the run folder's final checkpoint, after stage 2")
        return cls(model, cls._encoder_for(model), extras=extras, source=str(directory))

    @classmethod
    def from_model(cls, model, encoder=None) -> MMTalker:
        """Wrap a network in memory (tests, benchmarks); ``encoder`` defaults to the one its config names."""
        return cls(model, encoder if encoder is not None else cls._encoder_for(model))

    @staticmethod
    def _encoder_for(model):
        from mmtalker.audio.encoders import trained_model_encoder

        config = model.config  # a peer's config names no extra layers: the plain encoder; a fine-tuned one: its tuned blocks
        encoder = trained_model_encoder(model)
        expected = config.audio_dim * getattr(config, "feature_streams", 1)  # a peer's audio_dim is its whole feature width
        if encoder.dim != expected:
            raise MMTalkerError(f"audio encoder {config.audio_encoder!r}",
                                f"gives {encoder.dim}-wide features but the model expects {expected}")
        return encoder

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        """Frames per second of the output (the training data's rate)."""
        return self.engine.fps

    @property
    def styles(self) -> list[str]:
        """The training subjects, usable as ``style``."""
        return list(self.model.config.subjects)

    @property
    def num_vertices(self) -> int:
        return self.model.num_vertices

    @property
    def template_mesh(self) -> Mesh:
        """The checkpoint's neutral template (its topology; the default face to animate)."""
        return Mesh(vertices=self.model.template.cpu().numpy().copy(), faces=self.model.faces.cpu().numpy().copy())

    # -- inputs ---------------------------------------------------------------------------------------
    def subject_index(self, style: str | None) -> int:
        """Style index for ``style`` (None: the mean training style); unknown names raise, listing the styles."""
        from mmtalker.models.mmtalker import UNSEEN_SUBJECT

        if style is None:
            return UNSEEN_SUBJECT
        if style not in self.styles:
            known = ", ".join(self.styles) or "(none: the checkpoint has no training subjects)"
            raise MMTalkerError(f"style {style!r}", "is not a subject this checkpoint was trained on", f"styles: {known}")
        return self.styles.index(style)

    def read_audio(self, audio: AudioLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """A path (any format mmtalker reads) or an array (N,) at ``sample_rate`` -> (N,) float32 16 kHz mono."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not (
                math.isfinite(sample_rate) and sample_rate > 0):
            raise MMTalkerError("sample_rate", f"must be a positive number of samples per second, got "
                                f"{type(sample_rate).__name__} {sample_rate!r}")
        if isinstance(audio, (str, os.PathLike)):
            samples = load_audio(audio)
            what = str(audio)
        else:
            what = "audio array"
            samples = audio_array(audio, what)  # a 1-D float array (or torch tensor), finite
            if sample_rate != SAMPLE_RATE:
                samples = resample_audio(samples, sample_rate, SAMPLE_RATE)
        if len(samples) < self.engine.min_samples:
            raise MMTalkerError(what, f"is {len(samples) / SAMPLE_RATE * 1000:.1f} ms long; at least "
                                f"{self.engine.min_samples / SAMPLE_RATE * 1000:.0f} ms of speech is needed")
        return samples

    def prepare_face(self, style: str | None = None, template: TemplateLike = None, *, place: bool = True) -> PreparedFace:
        """Run the mesh-only stages for ``style`` and ``template`` (see :meth:`animate`). ``place=False`` animates a
        template of the checkpoint's topology where it is, never moving it onto the checkpoint's face."""
        import torch

        subject = self.subject_index(style)
        if template is None:
            if style not in self._faces:
                geometry = self.model.templates_for(torch.tensor([subject], device=self.engine.device))[0]
                self._faces[style] = self.engine.prepare(subject, geometry)
            return self._faces[style]
        mesh = self._as_mesh(template)
        ckpt_faces = self.model.faces.cpu().numpy()
        same = mesh.vertices.shape[0] == self.num_vertices and (mesh.faces is None or _same_triangles(mesh.faces, ckpt_faces))
        if not np.isfinite(mesh.vertices).all():  # before the size check, which NaN would turn into "nan× the size"
            raise MMTalkerError(mesh.path or "template", "has NaN or infinite vertex positions")
        reference = self.model.template.cpu().numpy()
        if same:
            check_same_scale(mesh.path or "template", mesh.vertices, reference, "the face the checkpoint was trained on",
                             "give the template in the training data's units (mm and m differ 1000×)")
            face = self._prepare_in_place(subject, mesh, reference, place)
            if mesh.faces is not None:  # its own triangles (another order, corners or winding) for what it exports
                face.faces = np.asarray(mesh.faces, np.int64)
            return face
        if self.kind != "mmtalker":
            raise MMTalkerError(mesh.path or "template", f"is not the {self.kind} checkpoint's topology "
                                f"({self.num_vertices} vertices, its faces)", "the peers animate their training mesh only")
        if mesh.faces is None:
            raise MMTalkerError(mesh.path or "template", f"has {mesh.vertices.shape[0]} vertices, the checkpoint "
                                f"{self.num_vertices}", "give a mesh file (with faces) to retarget to another resolution")
        check_same_scale(mesh.path or "template", mesh.vertices, reference, "the face the checkpoint was trained on",
                         "give the mesh in the training data's units (mm and m differ 1000×)")
        retarget = build_retarget_map(mesh.vertices, mesh.faces, reference, ckpt_faces,
                                      self.model.vertex_uv.cpu().numpy(), corner_uv=self.model.corner_uv.cpu().numpy(),
                                      what=mesh.path or "template")
        return self.engine.prepare(subject, retarget.rest_on_checkpoint, retarget)

    def _prepare_in_place(self, subject: int, mesh: Mesh, reference: np.ndarray, place: bool = True) -> PreparedFace:
        """A face of the checkpoint's topology: animated where it is when it sits where the checkpoint's face sits;
        placed or turned otherwise (a head at standing height, a Z-up export), animated in the checkpoint's frame
        (moved onto its face by the best rigid motion) with the motion turned back, and a warning saying so."""
        what = mesh.path or "template"
        size = float(np.ptp(reference, axis=0).max())
        residual = fit_residual(mesh.vertices, reference)
        if residual > MAX_RESIDUAL_SHARE * size:
            raise MMTalkerError(what, f"has the checkpoint's vertex count and faces but not its face: even moved, turned "
                                f"and scaled onto it, its vertices stay {residual:.3g} from the checkpoint's (RMS; the face "
                                f"is {size:.3g} across)", "are its vertices in another order? give the checkpoint's "
                                "topology in its own vertex order")
        spread = lambda v: float(np.sqrt(((v - v.mean(axis=0)) ** 2).sum(axis=1).mean()))  # noqa: E731 (turn-proof)
        ratio = spread(mesh.vertices) / spread(reference)
        scaled = not MIN_SIZE_RATIO <= ratio <= 1.0 / MIN_SIZE_RATIO  # a scaled asset, not another person's head
        centre = mesh.vertices.mean(axis=0)
        shape = centre + (mesh.vertices - centre) / ratio if scaled else mesh.vertices  # at the checkpoint's size
        alignment = rigid_alignment(shape, reference)
        if not place or (not scaled and (not alignment.needed(size) or self._where_trained(mesh.vertices, size))):
            return self.engine.prepare(subject, mesh.vertices)
        parts = ([f"is {ratio:.2g}× the size"] if scaled else []) + (["is mirrored"] if alignment.mirrored else []) + (
            [f"lies {alignment.distance:.3g} {self._length_unit()} away"] if alignment.distance > MAX_SHIFT_SHARE * size
            else []) + (
            [f"is turned {alignment.angle_deg:.0f}°"] if alignment.angle_deg > MAX_ANGLE_DEG else [])
        warnings.warn(f"{what}: {', '.join(parts[:-1]) + ' and ' + parts[-1] if len(parts) > 1 else parts[0]} "
                      f"{'of' if parts[-1].endswith('size') else 'from'} the checkpoint's face: animated moved onto it, "
                      f"its motion brought back{' and scaled with it' if scaled else ''}", stacklevel=_caller_level())
        face = self.engine.prepare(subject, alignment.apply(shape), rest=mesh.vertices)
        face.turn = alignment.rotation * np.float32(ratio if scaled else 1.0)  # motion scaled with the face
        return face

    def _where_trained(self, vertices: np.ndarray, size: float) -> bool:
        """Whether a face sits where one of the checkpoint's training subjects' faces sat (a dataset whose subjects
        were captured in different places): the network has seen faces there, so it is animated where it is."""
        subjects = getattr(self.model, "subject_templates", None)
        if subjects is None:
            return False
        return any(not rigid_alignment(vertices, t).needed(size) for t in subjects.cpu().numpy())

    def _length_unit(self) -> str:
        """The unit of the checkpoint's training data (``m`` for VOCASET and the synthetic benchmark), as recorded."""
        units = ((self.extras.get("dataset") or {}).get("units") or {}) if isinstance(self.extras, dict) else {}
        return str(units.get("length", "units"))

    def _as_mesh(self, template) -> Mesh:
        if isinstance(template, Mesh):
            return template
        if isinstance(template, (str, os.PathLike)):
            return load_mesh(template)
        try:
            verts = np.asarray(template, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise MMTalkerError("template", f"must be a mesh path, Mesh or ({self.num_vertices}, 3) array, "
                                f"got {type(template).__name__} ({exc})") from None
        if verts.shape != (self.num_vertices, 3):
            raise MMTalkerError("template array", f"must be finite ({self.num_vertices}, 3) vertex positions, got shape "
                                f"{verts.shape}", "pass a mesh file or Mesh to use another resolution")
        if not np.isfinite(verts).all():
            raise MMTalkerError("template array", "holds NaN or infinite vertex positions")
        return Mesh(vertices=verts, faces=self.model.faces.cpu().numpy())

    # -- animation ------------------------------------------------------------------------------------
    def num_frames_for(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` of 16 kHz audio: round(duration × fps), at least 1."""
        return max(1, int(round(num_samples / SAMPLE_RATE * self.fps)))

    def iter_animate(self, audio: AudioLike, *, style: str | None = None, template: TemplateLike = None,
                     num_frames: int | None = None, sample_rate: int = SAMPLE_RATE, window_s: float = DEFAULT_WINDOW_S,
                     overlap_s: float = DEFAULT_OVERLAP_S, on_window=None,
                     face: PreparedFace | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Like :meth:`animate`, yielding finished (start, frames (n, P, 3)) blocks window by window.
        ``face`` (from :meth:`prepare_face`) replaces ``style`` and ``template`` when given.

        The arguments are checked when this is called, before the first block is asked for."""
        samples = self.read_audio(audio, sample_rate)
        face = self._face_for(style, template, face)
        T = self._frames_to_make(num_frames, len(samples))
        self._check_window(window_s, overlap_s)
        return iter_windowed(samples, self.fps, T, lambda seg, n: self.engine.frames(face, seg, n),
                             window_s=window_s, overlap_s=overlap_s, min_samples=self.engine.min_samples,
                             on_window=on_window)

    def animate(self, audio: AudioLike, *, style: str | None = None, template: TemplateLike = None,
                num_frames: int | None = None, sample_rate: int = SAMPLE_RATE, window_s: float = DEFAULT_WINDOW_S,
                overlap_s: float = DEFAULT_OVERLAP_S, out: np.ndarray | None = None,
                face: PreparedFace | None = None) -> np.ndarray:
        """Animate speech; returns vertex positions (T, P, 3) float32 at :attr:`fps`.

        Args:
            audio: a file path (wav, flac, ogg, mp3; any rate, mono or stereo) or samples (N,) at ``sample_rate``.
            style: a training subject (see :attr:`styles`); None for the mean training style.
            template: None (the style subject's training template, else the neutral one); a mesh path, Mesh or
                (V, 3) array with the checkpoint's topology (its shape is the rest shape); or a mesh of another
                resolution lying on the checkpoint's face (retargeted through UV; P = its vertex count).
            num_frames: T; default round(duration × fps). Audio shorter than T frames is padded with silence.
            window_s, overlap_s: window and crossfade lengths for long audio (window at most the encoder's 30 s).
            out: optional (T, P, 3) float32 array to fill (e.g. ``np.lib.format.open_memmap`` for hours of audio).
            face: what :meth:`prepare_face` returned, in place of ``style`` and ``template``.
        """
        samples = self.read_audio(audio, sample_rate)
        T = self._frames_to_make(num_frames, len(samples))
        face = self._face_for(style, template, face)
        if out is not None:
            self._check_out(out, (T, face.num_points, 3))
        result = out
        for start, block in self.iter_animate(samples, face=face, num_frames=T, window_s=window_s, overlap_s=overlap_s):
            if result is None:
                result = np.empty((T, *block.shape[1:]), np.float32)
            result[start : start + len(block)] = block
        return result

    def _face_for(self, style, template, face) -> PreparedFace:
        """``face`` (what :meth:`prepare_face` returned), checked, or the face ``style`` and ``template`` give."""
        if face is None:
            return self.prepare_face(style, template)
        if not isinstance(face, PreparedFace):
            raise MMTalkerError("face", f"must be what prepare_face() returns, got {type(face).__name__}",
                                "or leave it out and pass style/template")
        if style is not None or template is not None:
            raise MMTalkerError("face", "replaces style and template, which were given too", "pass one or the other")
        return face

    MAX_PADDING = 10
    """``num_frames`` may ask for at most this many times the audio's frames, plus one second (the rest is silence)."""

    def _frames_to_make(self, num_frames, num_samples: int) -> int:
        """``num_frames`` checked (None: the audio's own count): a whole number ≥ 1, not far beyond the audio."""
        own = self.num_frames_for(num_samples)
        if num_frames is None:
            return own
        if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Real) or not (
                math.isfinite(num_frames) and float(num_frames).is_integer()):
            raise MMTalkerError("num_frames", f"must be a whole number of frames, got {type(num_frames).__name__} {num_frames!r}")
        T = int(num_frames)
        if T < 1:
            raise MMTalkerError("num_frames", f"must be at least 1, got {T}", "leave it out for the audio's own length")
        most = self.MAX_PADDING * own + int(math.ceil(self.fps))
        if T > most:
            raise MMTalkerError("num_frames", f"{T} is far more than the audio gives ({own} frames, "
                                f"{num_samples / SAMPLE_RATE:.2f} s at {self.fps:g} fps); at most {most} "
                                f"({self.MAX_PADDING}× + 1 s of silence)", "leave it out for the audio's own length")
        return T

    @staticmethod
    def _check_out(out, shape: tuple[int, int, int]) -> None:
        if not isinstance(out, np.ndarray):
            raise MMTalkerError("out", f"must be a numpy array, got {type(out).__name__}")
        if out.dtype != np.float32 or out.shape != shape:
            raise MMTalkerError("out", f"must be a float32 array of shape {shape}, got {out.dtype} {out.shape}")
        if not out.flags.writeable:
            raise MMTalkerError("out", "is read-only", "pass a writeable array (or np.lib.format.open_memmap in w+ mode)")

    @property
    def max_window_s(self) -> float | None:
        """The longest window (seconds) the speech encoder takes in one pass (None: no limit)."""
        limit = self.engine.max_samples
        return None if limit is None else limit / SAMPLE_RATE

    def _check_window(self, window_s: float, overlap_s: float = DEFAULT_OVERLAP_S) -> None:
        frames_for_window(window_s, overlap_s, self.fps)  # numbers, finite, window positive, overlap under half of it
        longest = self.max_window_s
        if longest is not None and window_s > longest:
            raise MMTalkerError("window_s", f"{window_s} s is longer than the speech encoder takes "
                                f"({longest:.0f} s)", "use a shorter window")

    def stream(self, *, style: str | None = None, template: TemplateLike = None, **kw):
        """A :class:`mmtalker.inference.stream.StreamingAnimator` for audio arriving in chunks."""
        from mmtalker.inference.stream import StreamingAnimator

        if self.kind != "mmtalker":
            raise MMTalkerError(self.source or self.kind, f"is a {self.kind} checkpoint; streaming needs an MMTalker one")
        known = tuple(inspect.signature(StreamingAnimator).parameters)[2:]  # its options, after engine and face
        unknown = sorted(set(kw) - set(known))
        if unknown:
            raise MMTalkerError("stream", f"has no option {', '.join(unknown)}", f"options: style, template, {', '.join(known)}")
        return StreamingAnimator(self.engine, self.prepare_face(style, template), **kw)


def _same_triangles(faces: np.ndarray, reference: np.ndarray) -> bool:
    """Whether two face arrays hold the same triangles, whatever their order, first corner or winding (an exporter
    for another handedness reverses every triangle)."""
    faces, reference = np.asarray(faces), np.asarray(reference)
    if faces.shape != reference.shape:
        return False
    if np.array_equal(faces, reference):
        return True
    canon = lambda f: np.unique(np.sort(f, axis=1), axis=0)  # noqa: E731
    return np.array_equal(canon(faces), canon(reference))


def _caller_level() -> int:
    """``warnings.warn``'s stacklevel, for a warning raised by the function calling this, that names the first frame
    outside ``mmtalker.inference``: the user's line for the Python API whichever entry they called (``animate``,
    ``iter_animate``, ``stream``, ``prepare_face``), the command's for the CLI."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2  # 1: the warning's function (it calls this)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level

