"""Writing one finished motion to a file: BVH (our writer), FBX and glTF (Blender's exporters),
.blend (a library file). Each is written atomically: a unique temporary in the same folder,
then renamed (``mas_engine.atomic``).

Each file's animation starts at time 0, so that Blender's own importers (and other tools) put
the first key on frame 1 with the default settings: glTF with ``export_anim_slide_to_zero``;
FBX by exporting each action as an NLA strip, which the FBX exporter writes from time 0 as a
take named after the action (a scene-wide take starts at frame_start / fps, and came back one
frame late).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import bpy

from mas_engine.atomic import atomic_write
from mas_engine.errors import MasError

from . import compat, scene

FORMATS = {"BLEND": ".blend", "BVH": ".bvh", "FBX": ".fbx", "GLB": ".glb"}


def export(fmt: str, path: Path, objects, action, track, overwrite: bool = True) -> None:
    """Write ``fmt`` of one motion (its objects, action and rotation track) to ``path``
    (``overwrite=False``: never replace a file, FileExists)."""
    def write(tmp: Path):
        if fmt == "BVH":
            from retarget.retarget import write_track     # here: retarget needs torch, the add-on registers without it

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
                        with _as_strips(objects):
                            bpy.ops.export_scene.fbx(filepath=str(tmp), use_selection=True, bake_anim=True,
                                                     add_leaf_bones=False, bake_anim_use_nla_strips=True,
                                                     bake_anim_use_all_actions=False,
                                                     bake_anim_simplify_factor=0.0)
                    else:
                        bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True,
                                                  export_animations=True, export_animation_mode="ACTIVE_ACTIONS",
                                                  export_anim_slide_to_zero=True)
                finally:
                    sc.frame_start, sc.frame_end = old
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise MasError(f"the {fmt} exporter wrote nothing to {tmp.name}")

    atomic_write(path, write, overwrite=overwrite)


@contextmanager
def _as_strips(objects):
    """Each object's active action on an NLA track of its own while inside (the FBX exporter
    writes strips from time 0); everything is put back as it was on leaving."""
    moved = []
    try:
        for obj in objects:
            ad = obj.animation_data
            if ad is None or ad.action is None:
                continue
            action = ad.action
            track = compat.push_to_nla(obj, action, action.name, int(action.frame_range[0]), mute=False)
            ad.action = None
            moved.append((obj, action, track))
        yield
    finally:
        for obj, action, track in moved:
            obj.animation_data.nla_tracks.remove(track)
            obj.animation_data.action = action
            compat.bind_slot(obj, action)
