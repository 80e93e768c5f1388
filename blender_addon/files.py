"""FBX and glTF files of a rotation track, for scripts and the command line (``mas generate
--format fbx``, ``mas retarget --out x.glb``): the track's character is built in the current
scene of Blender's ``bpy`` module, written through ``exporters`` (the same files as the add-on's
batch), and removed again; the scene's frame rate is set to the track's while writing.
"""
from __future__ import annotations

from pathlib import Path

import bpy

from mas_engine.errors import MasError

from . import exporters, scene

SUFFIXES = {".fbx": "FBX", ".glb": "GLB"}


def write_track_file(path, track, name: str = "", overwrite: bool = False) -> Path:
    """Write ``track`` (a ``retarget.fit.RotationTrack``) as FBX or GLB by the path's suffix, atomically;
    an existing file is kept unless ``overwrite`` (MasError). Returns the path."""
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise MasError(f"output {path}: Blender writes {', '.join(SUFFIXES)} files")
    if path.exists() and not overwrite:
        raise MasError(f"{path} exists; pass --overwrite to replace it, or choose another name")
    name = name or path.stem
    sc = bpy.context.scene
    old = (sc.render.fps, sc.render.fps_base, sc.frame_start, sc.frame_end)
    fps = float(track.fps)
    sc.render.fps, sc.render.fps_base = max(1, round(fps)), max(1, round(fps)) / fps
    created = []
    try:
        sc.frame_start = 1
        obj = scene.build_armature(track.armature, name)
        created.append(obj)
        created.append(scene.build_body(track.armature, obj, name + "_body"))
        action = scene.apply_track(obj, track, name, 1)
        created.append(action)
        objects = [obj, created[1]]
        if "ball" in track.props:
            ball, ball_action = scene.build_ball(obj, track, name + "_ball", 1)
            created += [ball, ball_action]
            objects.append(ball)
        path.parent.mkdir(parents=True, exist_ok=True)
        exporters.export(fmt, path, objects, action, track, overwrite=overwrite)
    finally:
        scene.remove(reversed(created))
        sc.render.fps, sc.render.fps_base, sc.frame_start, sc.frame_end = old
    return path
