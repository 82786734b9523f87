"""Blender's own glTF importer plays our GLB: shape keys, keyframes at the frame times, and the evaluated
mesh equal to the animation at every checked frame, negative principal-component weights included.

Skipped where no ``blender`` is on PATH (CI has none; Debian: ``apt-get install blender python3-numpy``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fake_talk import grid_mesh
from mmtalker.render.export import export_glb

BLENDER = shutil.which("blender")
pytestmark = pytest.mark.skipif(BLENDER is None, reason="needs Blender (apt-get install blender python3-numpy)")
FPS, T = 30, 45


def _animation():
    mesh = grid_mesh(9)
    t = np.arange(T) / FPS
    v = np.repeat(mesh.vertices[None], T, 0).astype(np.float64)
    v[:, :, 2] += 0.01 * np.sin(2 * np.pi * 1.5 * t)[:, None] * (mesh.vertices[:, 0] > 0)[None]  # weights of both signs
    v[:, :, 1] += 0.005 * np.cos(2 * np.pi * 0.7 * t)[:, None] * (mesh.vertices[:, 1] > 0)[None]
    return mesh, v.astype(np.float32)


def test_blender_imports_and_plays_the_glb(tmp_path):
    mesh, verts = _animation()
    glb = tmp_path / "anim.glb"
    export_glb(glb, verts, mesh.faces, fps=FPS, template=mesh.vertices)
    frames = [0, 1, 2, 7, 10, 23, 44]
    out = tmp_path / "blender.json"
    probe = Path(__file__).with_name("blender_probe.py")
    done = subprocess.run([BLENDER, "-b", "--factory-startup", "--python", str(probe), "--", str(glb), str(out), str(FPS),
                           ",".join(map(str, frames))], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["shape_keys"][0] == "Basis" and len(got["shape_keys"]) >= 2
    assert got["key_frames"] == list(range(T))  # frame i at i / fps seconds: the audio's timing
    scale = float(np.abs(verts - verts.mean(0)).max())
    for f in frames:
        np.testing.assert_allclose(np.asarray(got["positions"][str(f)]), verts[f], atol=1e-3 * scale, rtol=0, err_msg=f"frame {f}")
