"""The renderer draws the face where it should be, refuses blank frames, and videos keep audio in sync."""

import numpy as np
import pytest
import soundfile as sf

from mmtalker.errors import MMTalkerError
from mmtalker.render.renderer import MeshRenderer, RenderError, fit_camera, vertex_normals
from mmtalker.render.video import video_info, write_video


def _sphere(n=24):
    """A UV sphere of radius 0.1 (metres) with outward triangles."""
    lat = np.linspace(0, np.pi, n)
    lon = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    verts = 0.1 * np.stack([np.sin(la) * np.cos(lo), np.cos(la), np.sin(la) * np.sin(lo)], -1).reshape(-1, 3)
    faces = []
    m = 2 * n
    for i in range(n - 1):
        for j in range(m):
            a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + j, (i + 1) * m + (j + 1) % m
            faces += [[a, b, c], [b, d, c]]
    return verts, np.array(faces)


@pytest.fixture(scope="module")
def flame(fixtures_dir):
    import trimesh

    mesh = trimesh.load(fixtures_dir / "meshes" / "flame_sample.ply", process=False)
    return np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces)


def test_face_silhouette(flame):
    verts, faces = flame
    renderer = MeshRenderer(faces, width=128, height=160)
    image = renderer.render(verts)
    assert image.shape == (160, 128, 3) and image.dtype == np.uint8
    drawn = np.any(image != 255, axis=-1)
    assert drawn[80, 64], "the centre of the frame (the face) should be drawn"
    assert not drawn[:3, :3].any() and not drawn[-3:, -3:].any(), "the corners should be background"
    assert 0.2 < drawn.mean() < 0.8
    # left-right symmetric face: the silhouette is close to its mirror image
    assert (drawn != drawn[:, ::-1]).mean() < 0.05


def test_colors_and_moving_camera(flame):
    verts, faces = flame
    renderer = MeshRenderer(faces, width=96, height=96, camera=fit_camera(verts))
    red = np.zeros_like(verts)
    red[:, 0] = 1.0
    image = renderer.render(verts, colors=red).astype(int)
    face = np.any(image != 255, axis=-1)
    assert (image[face, 0] > image[face, 1] + 40).mean() > 0.9
    with pytest.raises(RenderError, match="nothing was drawn"):
        renderer.render(verts + np.array([10.0, 0, 0], dtype=np.float32))
    with pytest.raises(RenderError, match="NaN"):
        bad = verts.copy()
        bad[0, 0] = np.nan
        renderer.render(bad)


def test_vertex_normals_point_outward():
    verts, faces = _sphere()
    normals = vertex_normals(verts, faces)
    radial = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    assert np.mean(np.sum(normals * radial, axis=1) > 0.95) > 0.95


def test_video_with_audio_in_sync(tmp_path):
    verts, faces = _sphere(12)
    renderer = MeshRenderer(faces, width=64, height=64)
    fps, seconds = 25, 1.2
    wav = tmp_path / "tone.wav"
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    frames = (renderer.render(verts * (1 + 0.1 * np.sin(k / 3))) for k in range(int(fps * seconds)))
    out = write_video(tmp_path / "v.mp4", frames, fps, audio_path=wav)
    info = video_info(out)
    assert info["frames"] == 30 and info["fps"] == pytest.approx(fps)
    assert info["video_codec"].startswith("h264") and info["audio_codec"] == "aac"
    assert abs(info["audio_duration"] - info["duration"]) < 1.0 / fps + 0.03  # AAC priming is ~1024 samples
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # the index first ("fast start"): a browser plays it while loading
    with pytest.raises(MMTalkerError, match="already exists"):
        write_video(out, iter([]), fps)
