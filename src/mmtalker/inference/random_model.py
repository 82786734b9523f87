"""Randomly initialised MMTalker networks on any mesh: for benchmarks (speed does not depend on training)
and tests. The regressor's output layer, zero at initialisation (a trained-from-scratch model starts
still), is drawn at random here so that the face moves and outputs can be compared."""

from __future__ import annotations

import numpy as np
import torch

from mmtalker.mesh.io import Mesh
from mmtalker.mesh.uv import parameterize


def build_random_model(mesh: Mesh, config=None, *, seed: int = 0, subjects: list[str] | None = None,
                       motion_fraction: float = 0.01):
    """An MMTalker network (eval mode) on ``mesh`` with ``config`` (default: ``MMTalkerConfig()``).

    ``motion_fraction``: the motion scale as a fraction of the mesh's bounding-box diagonal.
    ``subjects`` (when given) replaces the config's training subjects (style embeddings).
    """
    from mmtalker.models.mmtalker import MMTalker, MMTalkerConfig

    config = config or MMTalkerConfig()
    if subjects is not None:
        config.subjects = list(subjects)
    torch.manual_seed(seed)
    uvmap = parameterize(mesh)
    verts = np.asarray(mesh.vertices, np.float32)
    size = float(np.linalg.norm(verts.max(0) - verts.min(0)))
    model = MMTalker(config, uvmap.faces, uvmap.vertex_uv, verts, motion_scale=motion_fraction * size,
                     corner_uv=uvmap.uv[uvmap.faces_uv])
    for p in model.regressor.out.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def default_face_mesh(num_vertices: int = 5000) -> tuple[Mesh, str]:
    """The benchmark's default face (menpo3d's template reduced to about ``num_vertices``, else the
    procedural head) and where it came from."""
    from mmtalker.synth.face import load_default_face

    face = load_default_face(num_vertices)
    return face.mesh, face.source
