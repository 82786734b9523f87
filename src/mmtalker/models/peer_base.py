"""What the peer models (VOCA, FaceFormer, CodeTalker) share: dense per-vertex output on one topology.

Unlike MMTalker, which predicts a displacement field over the UV plane, the peers predict the V×3 offsets
of the training topology's vertices directly. They carry the same mesh facts as buffers (faces, neutral
template, subject templates, motion scale), so a checkpoint rebuilds them with nothing else, and they offer
MMTalker's inference entry points (``predict_vertices``, ``subject_index``, ``templates_for``), so the
validation code, the benchmark and the exporters treat all four alike.

Shapes: ``B`` clips, ``T`` frames, ``C`` speech-feature width, ``V`` vertices, ``S`` training subjects.
Networks work in *motion units* (displacement / ``motion_scale``); ``predict_vertices`` returns the
dataset's unit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmtalker.audio.finetune import TunedBlocks, tuned_width
from mmtalker.errors import MMTalkerError

UNSEEN_SUBJECT = -1  # same meaning as in mmtalker.models.mmtalker: use the mean style

MESH_BUFFERS = ("faces", "template", "subject_templates", "motion_scale")


def check_fps(fps, where: str) -> None:
    """A model config's ``fps`` (the mesh frame rate it was trained at) a finite number above 0, else
    MMTalkerError naming ``where``: inference divides by it to cut the speech into frames."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise MMTalkerError(where, f"setting 'fps' must be a positive frame rate, got {fps!r}",
                            "it is the frame rate of the meshes the model was trained on, such as 30")


def check_own_inputs(config, where: str) -> None:
    """The autoregressive peers' scheduled-sampling settings (``own_inputs``, ``own_input_passes``; used by
    ``mmtalker.train.peers.scheduled_inputs``) in range, else MMTalkerError naming ``where``."""
    if not 0.0 <= config.own_inputs <= 1.0:
        raise MMTalkerError(where, f"setting 'own_inputs' must lie in [0, 1], got {config.own_inputs}")
    if config.own_input_passes < 1:
        raise MMTalkerError(where, f"setting 'own_input_passes' must be 1 or more, got {config.own_input_passes}")


class DenseVertexModel(nn.Module):
    """Base class: mesh buffers, style lookup and the inference entry point.

    Args:
        config: the model's config dataclass (with ``subjects``, ``fps``, ``audio_encoder``, ``audio_dim``).
        template: (V, 3) neutral template, dataset unit.
        subject_templates: (S, V, 3) training subjects' templates in ``config.subjects`` order (None: the template).
        motion_scale: RMS of training displacements (dataset unit).
        faces: (F, 3) long triangles of the topology (for rendering and export; the network ignores them).
    Subclasses implement ``motion(audio, subject, mask) -> (B, T, V, 3)`` in motion units.
    """

    def __init__(self, config, template, subject_templates=None, motion_scale: float = 1.0, faces=None):
        super().__init__()
        self.config = config
        template = torch.as_tensor(template, dtype=torch.float32)
        if subject_templates is None:
            subject_templates = template.expand(max(len(config.subjects), 1), -1, -1)
        if faces is None:
            faces = torch.zeros(0, 3, dtype=torch.long)
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long).clone())
        self.register_buffer("template", template.clone())
        self.register_buffer("subject_templates", torch.as_tensor(subject_templates, dtype=torch.float32).clone())
        self.register_buffer("motion_scale", torch.tensor(float(motion_scale)))
        # fine-tuned speech-encoder blocks, as in MMTalker: run by the trainer, copied into the encoder at inference
        self.audio_blocks = TunedBlocks(config, tuned_width(config)) if getattr(config, "audio_finetune", 0) else None

    @classmethod
    def from_state(cls, config, state: dict):
        """An untrained model shaped to receive ``state`` (a checkpoint's tensors, mesh buffers included)."""
        return cls(config, state["template"], state["subject_templates"], float(state["motion_scale"]), state["faces"])

    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    @property
    def num_subjects(self) -> int:
        return max(len(self.config.subjects), 1)

    def subject_index(self, name: str | None) -> int:
        """Style index of a training subject; None or an unknown name gives UNSEEN_SUBJECT (mean style)."""
        return self.config.subjects.index(name) if name in self.config.subjects else UNSEEN_SUBJECT

    def templates_for(self, subject: torch.Tensor) -> torch.Tensor:
        """subject (B,) -> templates (B, V, 3): a known subject's training template, else the neutral one."""
        known = self.subject_templates[subject.clamp_min(0)]
        return torch.where((subject >= 0).view(-1, 1, 1), known, self.template.expand_as(known))

    def style_weights(self, subject: torch.Tensor) -> torch.Tensor:
        """subject (B,) -> (B, S) one-hot rows; UNSEEN_SUBJECT gives the uniform row 1/S (the mean style)."""
        S = self.num_subjects
        onehot = torch.nn.functional.one_hot(subject.clamp_min(0), S).to(self.template.dtype)
        uniform = torch.full_like(onehot, 1.0 / S)
        return torch.where((subject >= 0).unsqueeze(-1), onehot, uniform)

    def motion(self, audio: torch.Tensor, subject: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict_vertices(self, audio, subject, templates=None, mask=None) -> torch.Tensor:
        """audio (B, T, C) encoder features at ``config.fps``, subject (B,) long -> displacements (B, T, V, 3)
        in the dataset unit. ``templates`` is accepted for MMTalker's signature and not used: the peers'
        offsets do not depend on the face's shape (add them to any template of this topology)."""
        return self.motion(audio, subject, mask) * self.motion_scale
