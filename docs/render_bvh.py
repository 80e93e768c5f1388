"""Render frames of a retargeted BVH in Blender (headless), with the rig's procedural mesh.

    python docs/render_bvh.py MOTION.bvh OUT.png [--rig human|horse] [--frames 0,30,60,90]

A visual check of what `mas retarget` writes: Blender's own BVH importer builds the armature
and action, the mesh of `rigs.mesh` is skinned to it, and the Workbench engine renders the
frames side by side into one PNG. Needs the `bpy` module (Python 3.11).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rigs.armature import horse_armature, human_armature  # noqa: E402
from rigs.mesh import bone_tubes  # noqa: E402


def build_mesh(arm_obj, rig):
    """The procedural mesh in the rest pose of the imported armature, skinned bone by bone."""
    names = [b.name for b in arm_obj.data.bones]
    heads = np.array([arm_obj.data.bones[n].head_local for n in names])
    tails = np.array([arm_obj.data.bones[n].tail_local for n in names])
    # the importer's armature, with the built-in rig's names and our tube geometry
    proto = rig
    idx = {n: i for i, n in enumerate(names)}
    proto.heads[:] = [heads[idx[b]] for b in proto.bones]
    proto.tails[:] = [tails[idx[b]] for b in proto.bones]
    mesh = bone_tubes(proto)
    me = bpy.data.meshes.new("body")
    me.from_pydata(mesh.vertices.tolist(), [], [list(dict.fromkeys(f)) for f in mesh.faces.tolist()])
    obj = bpy.data.objects.new("body", me)
    bpy.context.scene.collection.objects.link(obj)
    for b, name in enumerate(proto.bones):
        group = obj.vertex_groups.new(name=name)
        group.add([int(i) for i in np.nonzero(mesh.bone == b)[0]], 1.0, "REPLACE")
    mod = obj.modifiers.new("armature", "ARMATURE")
    mod.object = arm_obj
    obj.matrix_world = arm_obj.matrix_world
    return obj


def studio(scene, width: int, height: int, color_type: str = "OBJECT", floor_half: float = 30.0):
    """Workbench with studio light, a grey floor and a camera (returned) for headless pictures."""
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = color_type
    scene.world = bpy.data.worlds.new("w")
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    h = floor_half
    floor = bpy.data.meshes.new("floor")
    floor.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("floor", floor))
    return cam


def aim(cam, location, target) -> None:
    """Put the camera at ``location`` looking at ``target`` (metres, Z up), horizon level."""
    cam.location = tuple(location)
    d = np.asarray(target, float) - np.asarray(location, float)
    cam.rotation_euler = (math.atan2(math.hypot(d[0], d[1]), -d[2]), 0, math.atan2(d[1], d[0]) - math.pi / 2)


def render_frame(scene, path: Path) -> np.ndarray:
    """Render the current frame through a temporary PNG; rows x columns x RGBA, top row first."""
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path))
    px = np.array(img.pixels[:]).reshape(img.size[1], img.size[0], 4)[::-1]
    bpy.data.images.remove(img)
    path.unlink()
    return px


def save_strip(images, out) -> None:
    """Images side by side into one PNG."""
    strip = np.concatenate(images, 1)
    img = bpy.data.images.new("strip", strip.shape[1], strip.shape[0], alpha=True)
    img.pixels = strip[::-1].ravel().tolist()
    img.filepath_raw = str(out)
    img.file_format = "PNG"
    img.save()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("bvh")
    ap.add_argument("out")
    ap.add_argument("--rig", default="human")
    ap.add_argument("--frames", default="0,30,60,90")
    a = ap.parse_args(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=a.bvh, update_scene_fps=True, update_scene_duration=True)
    arm_obj = bpy.context.selected_objects[0]
    rig = human_armature() if a.rig == "human" else horse_armature()
    build_mesh(arm_obj, rig)
    scene = bpy.context.scene
    cam = studio(scene, 320, 400, "SINGLE", 20.0)
    images = []
    for k, f in enumerate(int(x) for x in a.frames.split(",")):
        scene.frame_set(scene.frame_start + f)
        root = arm_obj.matrix_world @ arm_obj.pose.bones[0].head
        aim(cam, (root.x + 2.3, root.y - 2.3, 1.4), (root.x, root.y, 0.9))
        images.append(render_frame(scene, Path(a.out).with_name(f".frame_{k}.png")))
    save_strip(images, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
