"""``mmtalker export``: an animation to files that Blender and game engines read."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmtalker.commands.options import check_output_file, check_output_folder, frames_text, require_positive
from mmtalker.errors import MMTalkerError


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export an animation as npz, an OBJ sequence, or glTF binary (GLB) for Blender and engines",
        description=(
            "Export an animation (.npy (T, V, 3) or (T, V*3), or .npz from 'mmtalker animate') with the template's "
            "topology (the faces an .npz carries, or --template's). Formats: npz (vertices, faces, fps); obj (one OBJ per frame in the --out folder); glb (one "
            "mesh, the motion as morph targets = shape keys with weights in [0, 1], and an animation of their weights "
            "at the frame times, which Blender's glTF importer plays in sync with the audio). The GLB compresses the motion "
            "to at most --max-targets principal components and reports the largest vertex error this costs."
        ),
        epilog="example: mmtalker export anim.npz --template face.obj --format glb --out talk.glb",
    )
    p.add_argument("animation", type=Path, help="animation file (.npy or .npz)")
    p.add_argument("--template", type=Path, help="mesh file (OBJ/PLY) with the animation's topology (default: the faces "
                   "an .npz carries; needed for .npy animations). For glb it is also the rest shape (else the mean frame)")
    p.add_argument("--format", choices=["npz", "obj", "glb"], required=True, help="output format")
    p.add_argument("--out", type=Path, required=True, help="output file (npz, glb) or folder (obj)")
    p.add_argument("--fps", type=float, help="frame rate (default: from the .npz, else 30); replaces the .npz's own")
    p.add_argument("--max-targets", type=int, default=64, help="glb: most morph targets (default 64)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="glb: largest vertex error wanted, in the mesh's unit (default 1e-4, 0.1 mm for metres)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (obj: also deletes the "
                   "frame_NNNNN.obj files of an earlier, longer export in the folder; other files stay)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmtalker.data.animation import load_animations
    from mmtalker.render import export

    suffix = {"npz": ".npz", "glb": ".glb"}.get(args.format)
    if suffix and args.out.suffix.lower() != suffix:
        raise MMTalkerError(args.out, f"a {args.format} export's file name should end in {suffix}",
                            f"e.g. --out {args.out.with_suffix(suffix)}")
    if args.format == "obj":
        check_output_folder(args.out)
    else:
        check_output_file(args.out, args.overwrite)
    fps_arg = require_positive("--fps", args.fps)  # given, it replaces the stored fps, even a damaged one
    [(vertices, file_fps)], faces, rest = load_animations([args.animation], args.template, fps_override=fps_arg)
    fps = fps_arg or file_fps or 30.0
    texture = {}  # the template's texture coordinates travel into the OBJ and GLB files
    if args.template is not None and args.format in ("obj", "glb"):
        from mmtalker.mesh.io import load_mesh

        mesh = load_mesh(args.template)
        if mesh.uv is not None:
            texture = {"uv": mesh.uv, "face_uv": mesh.face_uv}
    if args.format == "npz":
        export.export_npz(args.out, vertices, fps=fps, faces=faces, overwrite=args.overwrite)
        print(f"wrote {args.out} ({frames_text(len(vertices))} at {fps:g} fps)")
    elif args.format == "obj":
        paths = export.export_obj_sequence(args.out, vertices, faces, overwrite=args.overwrite, **texture)
        print(f"wrote {len(paths)} OBJ files to {args.out} (frame rate {fps:g} fps)")
    else:
        if args.max_targets < 1:
            raise MMTalkerError("--max-targets", "must be at least 1")
        info = export.export_glb(args.out, vertices, faces, fps=fps, template=rest,
                                 max_targets=args.max_targets, tolerance=args.tolerance, overwrite=args.overwrite, **texture)
        print(f"wrote {args.out} ({frames_text(len(vertices))} at {fps:g} fps, {info['targets']} morph targets, "
              f"largest vertex error {info['max_vertex_error']:.3g})")
    return 0
