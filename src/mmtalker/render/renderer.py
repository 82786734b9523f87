"""Offscreen mesh rendering with moderngl on EGL (Mesa llvmpipe on a CPU, the GPU where there is one).

The face is drawn smooth-shaded (per-vertex normals recomputed every frame) with two directional lights
and a fixed camera fitted once to the template, so that every frame of an animation is framed the same.
Meshes are expected in the usual face convention: +y up, +z toward the viewer (FLAME, VOCASET).

A frame that fails to render raises :class:`RenderError`; a frame in which nothing was drawn is an
error too, never a black frame written to a video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmtalker.errors import MMTalkerError

BACKGROUND = (1.0, 1.0, 1.0)
SKIN = (0.78, 0.72, 0.68)

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_normal;
out vec3 v_color;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
    v_normal = in_normal;
    v_color = in_color;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_normal;
in vec3 v_color;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 key = normalize(vec3(0.3, 0.4, 1.0));
    vec3 fill = normalize(vec3(-0.6, 0.1, 0.5));
    float diffuse = 0.65 * max(dot(n, key), 0.0) + 0.25 * max(dot(n, fill), 0.0);
    vec3 h = normalize(key + vec3(0.0, 0.0, 1.0));
    float spec = 0.12 * pow(max(dot(n, h), 0.0), 24.0);
    f_color = vec4(v_color * (0.22 + diffuse) + vec3(spec), 1.0);
}
"""


class RenderError(MMTalkerError):
    """Rendering failed (no EGL context, a blank frame, bad input)."""


@dataclass(frozen=True)
class Camera:
    """A perspective camera looking down −z at ``center`` from ``distance``; ``fov_y`` in degrees."""

    center: tuple[float, float, float]
    distance: float
    fov_y: float = 25.0

    def mvp(self, aspect: float) -> np.ndarray:
        """The 4×4 model-view-projection matrix (column-major for OpenGL), float32."""
        near, far = self.distance * 0.1, self.distance * 10.0
        f = 1.0 / np.tan(np.radians(self.fov_y) / 2)
        proj = np.array(
            [[f / aspect, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]],
            dtype=np.float64,
        )
        view = np.eye(4)
        view[:3, 3] = -np.asarray(self.center, dtype=np.float64) - np.array([0.0, 0.0, self.distance])
        return (proj @ view).T.astype(np.float32).copy()


def fit_camera(vertices: np.ndarray, *, fov_y: float = 25.0, margin: float = 1.15) -> Camera:
    """A front camera that frames ``vertices`` (V, 3) with a small margin."""
    vertices = np.asarray(vertices, dtype=np.float64)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    center = (lo + hi) / 2
    half = max(hi[0] - lo[0], hi[1] - lo[1]) / 2 * margin
    distance = half / np.tan(np.radians(fov_y) / 2) + (hi[2] - center[2])
    return Camera(center=tuple(float(c) for c in center), distance=float(distance), fov_y=fov_y)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted per-vertex normals, shape (V, 3), unit length (zero where a vertex has no face)."""
    tri = vertices[faces]  # (F, 3, 3)
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), length = 2 × area
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-20)


def create_context():
    """A standalone moderngl context on EGL; a clear error when none can be had."""
    try:
        import moderngl

        return moderngl.create_context(standalone=True, backend="egl")
    except Exception as exc:  # moderngl raises plain Exceptions for missing EGL/drivers
        raise RenderError(
            "EGL", f"could not create an offscreen OpenGL context ({exc})",
            "install Mesa's EGL (Debian: libegl1 libgl1-mesa-dri) or run on a machine with a GPU driver",
        ) from exc


class MeshRenderer:
    """Renders one topology (``faces``) at a fixed size and camera.

    Args:
        faces: int array (F, 3) of vertex indices.
        width, height: image size in pixels.
        camera: a :class:`Camera`; by default fitted to the first mesh rendered.
    """

    def __init__(self, faces: np.ndarray, *, width: int = 512, height: int = 512, camera: Camera | None = None):
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
            raise RenderError("faces", f"expected a non-empty (F, 3) array of triangles, got shape {faces.shape}")
        if width < 16 or height < 16:
            raise RenderError("size", f"{width}x{height} is too small to render")
        self.faces = faces
        self.width, self.height = int(width), int(height)
        self.camera = camera
        self._ctx = create_context()
        self._prog = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._fbo = self._ctx.simple_framebuffer((self.width, self.height), components=4, samples=0)
        self._index = self._ctx.buffer(faces.astype(np.int32).tobytes())
        self._num_vertices = int(faces.max()) + 1

    def render(self, vertices: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
        """One frame: ``vertices`` (V, 3), optional per-vertex ``colors`` (V, 3) in [0, 1]. Returns (H, W, 3) uint8."""
        vertices = np.asarray(vertices, dtype=np.float32)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] < self._num_vertices:
            raise RenderError("vertices", f"expected ({self._num_vertices}, 3) positions, got {vertices.shape}")
        if not np.all(np.isfinite(vertices)):
            raise RenderError("vertices", "the frame has NaN or infinite coordinates")
        if self.camera is None:
            self.camera = fit_camera(vertices)
        normals = vertex_normals(vertices.astype(np.float64), self.faces).astype(np.float32)
        if colors is None:
            colors = np.broadcast_to(np.asarray(SKIN, dtype=np.float32), vertices.shape)
        colors = np.asarray(colors, dtype=np.float32)
        if colors.shape != vertices.shape:
            raise RenderError("colors", f"expected per-vertex colours of shape {vertices.shape}, got {colors.shape}")
        data = np.concatenate([vertices, normals, np.clip(colors, 0, 1)], axis=1).astype(np.float32)
        vbo = self._ctx.buffer(data.tobytes())
        vao = self._ctx.vertex_array(self._prog, [(vbo, "3f 3f 3f", "in_pos", "in_normal", "in_color")], self._index)
        try:
            self._prog["mvp"].write(self.camera.mvp(self.width / self.height).tobytes())
            self._fbo.use()
            self._ctx.enable(self._ctx.DEPTH_TEST)
            self._fbo.clear(*BACKGROUND, 1.0, depth=1.0)
            vao.render()
            raw = self._fbo.read(components=3, alignment=1)
        finally:
            vao.release()
            vbo.release()
        image = np.frombuffer(raw, dtype=np.uint8).reshape(self.height, self.width, 3)[::-1].copy()
        background = (np.asarray(BACKGROUND) * 255).round().astype(np.uint8)
        if np.all(image == background):
            raise RenderError("frame", "nothing was drawn (the mesh is outside the camera's view or has no visible faces)")
        return image

    def release(self) -> None:
        """Frees the OpenGL objects (also done when the renderer is garbage-collected)."""
        for obj in (self._index, self._fbo, self._prog, self._ctx):
            obj.release()
