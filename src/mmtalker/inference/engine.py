"""The inference hot path: a trained network, its speech encoder and one prepared face.

Preparing a face (:meth:`Engine.prepare`) runs everything that depends only on the mesh once: the
geometry encoder (region tokens) and the per-point half of the regressor's factorised first layer,
W_p·[Fourier(u), G(u)] (P, H). Per stretch of audio, :meth:`Engine.motion` runs the speech encoder and
the audio/fusion stages (per-frame half W_z·z_t, (T, H)), and :meth:`Engine.decode` adds the two halves
and runs the rest of the regressor a chunk of frames at a time, so memory stays at chunk × P × H.

Shapes: ``T`` frames, ``P`` output points (the checkpoint's vertices or a retargeted mesh's), ``H`` the
regressor width, ``C`` speech-feature width. Lengths are in the checkpoint's unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmtalker.audio.encoders import features_at_fps
from mmtalker.audio.mel import N_FFT
from mmtalker.inference.retarget import RetargetMap

CHUNK_BYTES = 32 << 20  # size of one chunk's first-layer activations (chunk × P × H float32)


@dataclass
class PreparedFace:
    """Everything about one face that stays fixed while audio streams in.

    subject (1,) long style index; tokens (1, K, D); point_part: the regressor's per-point half as its
    ``prepare_points`` returns it ((1, P, H) for the MLP, (1, K, 3P) for the low-rank basis); rest (P, 3) float32 numpy, the
    rest positions the displacements are added to; faces (F', 3) int64 numpy, the output mesh's faces;
    eye_weight (P,) the eye pathway's blend weight at the output points (models with ``eye_pathway``);
    turn (3, 3) float32 or None: for a face placed or turned otherwise than the checkpoint's, the rotation that turns
    displacements from the checkpoint's frame into the face's (``displacement @ turn``; :mod:`mmtalker.mesh.align`).
    """

    subject: torch.Tensor
    tokens: torch.Tensor
    point_part: torch.Tensor
    rest: np.ndarray
    faces: np.ndarray
    eye_weight: torch.Tensor | None = None  # (P,): the eye pathway's share at each point (None: no eye pathway)
    turn: np.ndarray | None = None

    def place(self, displacement: np.ndarray) -> np.ndarray:
        """Displacements (..., P, 3) in the checkpoint's frame -> positions of this face."""
        return (displacement if self.turn is None else displacement @ self.turn) + self.rest

    @property
    def num_points(self) -> int:
        return self.rest.shape[0]


class _SpeechEngine:
    """What every engine holds: the network (eval mode), its speech encoder, the frame rate, the input limits."""

    def __init__(self, model, encoder):
        self.model = model.eval()
        self.device = next(model.parameters()).device  # the encoder follows the network; outputs come back as numpy
        self.encoder = encoder.to(self.device).eval()
        self.fps = float(model.config.fps)
        self.min_samples = N_FFT  # the encoders' shortest input (one STFT frame)
        self.max_samples = getattr(encoder, "max_samples", None)  # Whisper: 30 s

    @torch.inference_mode()
    def features(self, audio: np.ndarray, num_frames: int) -> torch.Tensor:
        """audio (n,) float32 16 kHz whose start is frame 0's time -> speech features (1, num_frames, C) at the model fps."""
        feats = self.encoder(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].to(self.device))  # (1, Ta, C)
        return features_at_fps(feats, self.encoder.rate, self.fps, num_frames)


class Engine(_SpeechEngine):
    """``model`` (mmtalker.models.mmtalker.MMTalker, eval mode) + ``encoder`` (its AudioEncoder)."""

    @torch.inference_mode()
    def prepare(self, subject: int, geometry_template: np.ndarray | torch.Tensor, retarget: RetargetMap | None = None,
                rest: np.ndarray | None = None) -> PreparedFace:
        """Run the mesh-only stages. ``geometry_template`` (V, 3) is the shape given to the geometry encoder;
        without ``retarget`` the output points are the checkpoint's vertices and ``rest`` (V, 3) (default:
        ``geometry_template``) the positions displacements are added to."""
        model = self.model
        dev = self.device
        templates = torch.as_tensor(geometry_template, dtype=torch.float32, device=dev)[None]  # (1, V, 3)
        g, tokens = model.encode_geometry(templates)
        if retarget is None:
            feats = model.vertex_features(g)  # (1, V, Cp)
            rest = np.asarray(templates[0].cpu() if rest is None else rest, np.float32)
            faces = model.faces.cpu().numpy()
            eye_weight = model.eye_weight if model.eye is not None else None
        else:
            p = retarget.points
            face_idx, bary = torch.from_numpy(p.face_idx).to(dev), torch.from_numpy(p.bary).to(dev)
            feats = model.point_features(g, face_idx, bary, torch.from_numpy(retarget.uv).to(dev))
            rest, faces = retarget.rest, retarget.faces
            eye_weight = None if model.eye is None else model.eye_weight_at(face_idx, bary.float())
        point_part = model.regressor.prepare_points(model.regressor.point_part(feats))  # decode's per-point half
        return PreparedFace(torch.tensor([subject], dtype=torch.long, device=dev), tokens, point_part,
                            np.ascontiguousarray(rest), faces, eye_weight)

    @torch.inference_mode()
    def motion(self, face: PreparedFace, features: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """features (1, T, C) -> the regressor's per-frame part (1, T, H), (1, T, 2H) with the eye pathway;
        ``last``: only the last frames' part, (1, last, H[·2]) (the others still give their context)."""
        return self.model.frame_part(features, face.subject, face.tokens, last=last)

    @torch.inference_mode()
    def decode(self, face: PreparedFace, frame_part: torch.Tensor) -> np.ndarray:
        """frame_part (1, T, H) -> vertex positions (T, P, 3) float32 = rest + displacement."""
        T, H = frame_part.shape[1], frame_part.shape[2]
        chunk = max(1, CHUNK_BYTES // (4 * face.num_points * H))
        out = np.empty((T, face.num_points, 3), np.float32)
        scale = float(self.model.motion_scale)
        for s in range(0, T, chunk):
            disp = self.model.decode(face.point_part, frame_part[:, s : s + chunk], face.eye_weight)[0]  # (c, P, 3)
            out[s : s + chunk] = face.place(disp.float().cpu().numpy() * scale)
        return out

    def frames(self, face: PreparedFace, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """audio (n,) -> positions (num_frames, P, 3): one encoder call, so at most the encoder's maximum length."""
        return self.decode(face, self.motion(face, self.features(audio, num_frames)))


class PeerEngine(_SpeechEngine):
    """The same entry points for a peer (VOCA, FaceFormer, CodeTalker: dense offsets of its training topology's
    vertices): no geometry stage to prepare, one call per window. No streaming (no per-frame half)."""

    def prepare(self, subject: int, geometry_template: np.ndarray | torch.Tensor, retarget: RetargetMap | None = None,
                rest: np.ndarray | None = None) -> PreparedFace:
        """The face whose vertices the offsets are added to: ``rest`` (default ``geometry_template``), (V, 3)."""
        if retarget is not None:
            raise ValueError("the peers animate their training topology only")
        rest = np.asarray(geometry_template if rest is None else rest, np.float32)
        return PreparedFace(torch.tensor([subject], dtype=torch.long, device=self.device), None, None,
                            np.ascontiguousarray(rest), self.model.faces.cpu().numpy())

    @torch.inference_mode()
    def frames(self, face: PreparedFace, audio: np.ndarray, num_frames: int) -> np.ndarray:
        """audio (n,) -> positions (num_frames, V, 3) = rest + the model's offsets."""
        disp = self.model.predict_vertices(self.features(audio, num_frames), face.subject)[0]
        return face.place(disp.float().cpu().numpy())
