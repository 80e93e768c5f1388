"""Render a generated motion on a Rigify control rig, headless, and print how well it is followed.

    python docs/render_rigify.py docs/addon_rigify.png [--seed 5] [--limbs FK] [--frames 1,30,60,90]

Generates Rigify's human metarig and its control rig (Rigify ships with Blender), drives the
control rig with the add-on's API (``api.generate_motion(target=rig)``: the motion is keyed on
its FK and IK controls), skins a tube to each of its DEF bones so that Workbench has something
to draw, and renders a few frames into one PNG. It also drives the metarig itself with the same
seed and prints the largest distance between the metarig's bones and the control rig's ORG bones
over the motion: what the controls reproduce. Needs the bpy module (Python 3.11).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bpy  # noqa: I001 - first: it makes Blender's own modules importable
import addon_utils
import bmesh
import numpy as np
from mathutils import Matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import blender_addon  # noqa: E402
from blender_addon import api  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_bvh import aim, render_frame, save_strip, studio  # noqa: E402


def skin_tubes(rig, radius=0.035):
    """One cylinder per DEF bone of ``rig`` (rest pose), weighted to it, in one mesh object."""
    bm = bmesh.new()
    groups = []
    for bone in rig.data.bones:
        if not bone.name.startswith("DEF-") or bone.length < 0.02:
            continue
        r = radius * (0.6 if any(k in bone.name for k in ("hand", "forearm", "toe", "neck", "spine.00")) else 1.0)
        made = bmesh.ops.create_cone(bm, cap_ends=True, segments=10, radius1=r, radius2=r * 0.8, depth=bone.length)
        along = bone.tail_local - bone.head_local
        axis = Matrix.Translation(bone.head_local + along / 2) @ along.normalized().to_track_quat("Z", "Y").to_matrix().to_4x4()
        bmesh.ops.transform(bm, matrix=axis, verts=made["verts"])
        groups.append((bone.name, [v for v in made["verts"]]))
    me = bpy.data.meshes.new("tubes")
    bm.verts.index_update()
    index = [(name, [v.index for v in verts]) for name, verts in groups]
    bm.to_mesh(me)
    bm.free()
    obj = bpy.data.objects.new("body", me)
    bpy.context.scene.collection.objects.link(obj)
    for name, idx in index:
        obj.vertex_groups.new(name=name).add(idx, 1.0, "REPLACE")
    obj.modifiers.new("Armature", "ARMATURE").object = rig
    obj.parent = rig
    return obj


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--limbs", default="FK", choices=("FK", "IK"))
    ap.add_argument("--frames", default="1,30,60,90")
    a = ap.parse_args(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_addon.register()
    scene = bpy.context.scene
    scene.render.fps = 30
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    meta = bpy.context.object
    bpy.ops.pose.rigify_generate()
    rig = bpy.context.object
    api.generate_motion(seed=a.seed, seconds=4.0, target=meta)
    made = api.generate_motion(seed=a.seed, seconds=4.0, target=rig, rigify_limbs=a.limbs)
    controls = sorted({fc.data_path.split('"')[1] for fc in blender_addon.compat.action_fcurves(made["action"], rig)
                       if not fc.data_path.endswith("ik_stretch")})         # the IK chains' stretch: a setting
    worst, limbs = 0.0, 0.0
    for f in range(1, 121):
        scene.frame_set(f)
        for b in meta.pose.bones:
            org = rig.pose.bones.get("ORG-" + b.name)
            if org is not None and not any(k in b.name for k in ("face", "lip", "brow", "lid", "ear", "nose", "cheek",
                                                                  "chin", "jaw", "tongue", "teeth", "temple", "forehead",
                                                                  "eye", "palm", "f_", "thumb", "breast", "pelvis", "heel")):
                e = max((b.head - org.head).length, (b.tail - org.tail).length)
                if e > worst:
                    worst, where = e, (b.name, f)
                if b.name.split(".")[0] in ("upper_arm", "forearm", "hand", "thigh", "shin", "foot", "toe"):
                    limbs = max(limbs, e)
    print(f"{len(controls)} controls keyed ({', '.join(controls[:12])}, ...); limbs {a.limbs}; "
          f"largest ORG-bone distance from the metarig's motion over 120 frames: {worst * 1000:.3f} mm ({where[0]}, frame {where[1]}); "
          f"arms and legs {limbs * 1000:.3f} mm")
    meta.hide_render = True
    body = skin_tubes(rig)
    body.color = (0.85, 0.45, 0.3, 1)
    cam = studio(scene, 400, 300)
    images = []
    for f in (int(x) for x in a.frames.split(",")):
        scene.frame_set(f)
        c = np.array(rig.matrix_world @ rig.pose.bones["torso"].head)
        aim(cam, (c[0] + 1.5, c[1] - 5.0, 1.4), (c[0], c[1], 0.9))
        images.append(render_frame(scene, Path(a.out).with_name(f".frame_{f}.png")))
    save_strip(images, a.out)
    print(f"wrote {a.out}: seed {a.seed}, frames {a.frames}")
    blender_addon.unregister()


if __name__ == "__main__":
    main()
