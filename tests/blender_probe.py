"""Run inside Blender (``blender -b --python tests/blender_probe.py -- GLB OUT.json FPS FRAMES``): import a GLB
with Blender's own glTF importer and write what it made: scene fps, shape keys, keyframe frames, and the
evaluated vertex positions (glTF axes: Blender's importer turns +Y up into +Z up) at the given frames."""

import json
import sys

import numpy

if not hasattr(numpy, "bool"):
    numpy.bool = bool  # Debian's Blender 3.4.1 glTF add-on still uses numpy.bool, gone from numpy 1.24

import bpy  # noqa: E402

glb, out, fps, frames = sys.argv[sys.argv.index("--") + 1 :]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = int(fps), 1.0
bpy.ops.import_scene.gltf(filepath=glb)
obj = next(o for o in scene.objects if o.type == "MESH")
keys = obj.data.shape_keys
action = keys.animation_data.action
key_frames = sorted({kp.co[0] for fc in action.fcurves for kp in fc.keyframe_points})
result = {"fps": scene.render.fps, "shape_keys": [k.name for k in keys.key_blocks], "key_frames": key_frames,
          "positions": {}}
for f in (int(x) for x in frames.split(",")):
    scene.frame_set(f)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    world = [list(obj.matrix_world @ v.co) for v in mesh.vertices]
    result["positions"][str(f)] = [[x, z, -y] for x, y, z in world]  # back to glTF's +Y up
    evaluated.to_mesh_clear()
with open(out, "w") as fh:
    json.dump(result, fh)
