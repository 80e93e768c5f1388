"""Writing one finished motion to a file: BVH (our writer), FBX and glTF (Blender's exporters),
.blend (a library file). Each is written atomically: a unique temporary in the same folder,
then renamed (``mas_engine.atomic``)."""
from __future__ import annotations

from pathlib import Path

import bpy

from mas_engine.atomic import atomic_write
from mas_engine.errors import MasError
from retarget.retarget import write_track

from . import scene

FORMATS = {"BLEND": ".blend", "BVH": ".bvh", "FBX": ".fbx", "GLB": ".glb"}


def export(fmt: str, path: Path, objects, action, track) -> None:
    """Write ``fmt`` of one motion (its objects, action and rotation track) to ``path``."""
    def write(tmp: Path):
        if fmt == "BVH":
            write_track(tmp, track)
        elif fmt == "BLEND":
            bpy.data.libraries.write(str(tmp), set(objects) | {action}, fake_user=True)
        else:
            sc = bpy.context.scene
            end = sc.frame_start + len(track.root) - 1
            with scene.selected(objects):
                old = (sc.frame_start, sc.frame_end)
                sc.frame_end = end
                try:
                    if fmt == "FBX":
                        bpy.ops.export_scene.fbx(filepath=str(tmp), use_selection=True, bake_anim=True,
                                                 add_leaf_bones=False, bake_anim_use_nla_strips=False,
                                                 bake_anim_use_all_actions=False)
                    else:
                        bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True,
                                                  export_animations=True, export_animation_mode="ACTIVE_ACTIONS")
                finally:
                    sc.frame_start, sc.frame_end = old
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise MasError(f"the {fmt} exporter wrote nothing to {tmp.name}")

    atomic_write(path, write)
