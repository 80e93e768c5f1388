"""From the scene to requests: the model, the rig (a built-in character or the user's armature
through a bone map), the scene's frame rate, and constraints read from the scene."""
from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from mas_engine.errors import MasError
from rigs.bonemaps import PRESETS, detect_preset, load_bone_map, resolve_preset
from rigs.keypoints import get_layout

from . import model_list, rigify, scene
from .jobs import Request


def scene_fps(sc=None) -> float:
    sc = sc or bpy.context.scene
    return sc.render.fps / sc.render.fps_base


def model_name(model: str) -> str:
    """A shipped model's name, or a checkpoint path's stem."""
    return Path(model).stem if ("/" in model or os.sep in model) else model


def resolve_bone_map(obj, rig: str, bone_map="auto", sc=None, names=None) -> dict[str, str]:
    """{built-in bone: bone of obj}: "auto" (the best preset), a preset name, "panel" (the scene's
    edited map), a JSON file from ``rigs.bonemaps.save_bone_map``, or a dict. ``names``: the bones
    to choose from (default: all of obj's)."""
    names = [b.name for b in obj.data.bones] if names is None else list(names)
    if isinstance(bone_map, dict):
        return dict(bone_map)
    if bone_map == "auto":
        return detect_preset(rig, names)[1]
    if bone_map == "panel":
        return {p.builtin: p.bone for p in (sc or bpy.context.scene).mas.bone_map if p.bone}
    if bone_map in PRESETS.get(rig, {}):
        return resolve_preset(PRESETS[rig][bone_map], names)
    if str(bone_map).lower().endswith(".json"):
        try:
            map_rig, m = load_bone_map(bpy.path.abspath(bone_map))
        except ValueError as e:
            raise MasError(str(e)) from None
        if map_rig != rig:
            raise MasError(f"bone map {bone_map} is for the {map_rig} rig; this model drives the {rig} rig")
        return m
    raise MasError(f"unknown bone map {bone_map!r}: use auto, panel, a preset ({', '.join(PRESETS.get(rig, {}))}) or a .json file")


def check_target(obj):
    """An armature we may animate: not linked from another file (its new action would be lost on
    save; a library override can be animated)."""
    if obj is None or getattr(obj, "type", None) != "ARMATURE":
        raise MasError("the target must be an armature object: select your character's armature, "
                       "or generate a new built-in character")
    if obj.library is not None:
        raise MasError(f"armature {obj.name} is linked from {obj.library.filepath} and cannot keep a new action: "
                       f"make a library override (Object > Library Override > Make > Selected & Content) "
                       f"and generate onto the override")
    return obj


def requests_for(seeds, model="human", seconds=4.0, views=5, steps=0, device="auto", in_place=False,
                 target=None, bone_map="auto", fps=None, models_folder="", loop=False, constraints=None,
                 foot_lock=True, loop_travel=False, pace="data") -> list[Request]:
    """One request per seed; the rig is the model's built-in character or ``target`` (an armature object).
    ``pace``: how much the motions move (``jobs.pace_setting``)."""
    info = model_list.model_info(model, models_folder)
    if not info.rig:
        raise MasError(f"model {model} uses keypoint layout {info.layout}, which has no built-in character")
    rig: object = info.rig
    if target is not None:
        check_target(target)
        if rigify.is_control_rig(target):       # fitted to its ORG bones, keyed on its controls
            spec = rigify.org_skeleton(target)
            spec["bone_map"] = resolve_bone_map(target, info.rig, "rigify" if bone_map == "auto" else bone_map,
                                                names=spec["bones"])
        else:
            spec = scene.read_skeleton(target)
            spec["bone_map"] = resolve_bone_map(target, info.rig, bone_map)
        rig = spec
    fps = fps or scene_fps()
    return [Request(model=model if info.shipped else info.path, seed=int(s), seconds=float(seconds),
                    fps=float(fps), views=int(views), steps=int(steps), device=device, in_place=bool(in_place),
                    loop=bool(loop or loop_travel), loop_travel=bool(loop_travel), foot_lock=bool(foot_lock), rig=rig,
                    pace=str(pace),
                    extra={"constraints": constraints} if constraints else {})
            for s in seeds]


def scene_constraints(model, target=None, start_from_pose=False, use_keyframes=False, path=None, location=None,
                      seconds=4.0, models_folder="", continue_action=False) -> dict | None:
    """Constraints read from the scene, as plain data for the pipeline (``jobs.plan_for``): the
    current pose of ``target`` as the start, the poses at its active action's keyframes
    (in-betweening, frames counted from the scene's start), the end of its active action to
    continue (``continue_action``: its last frames at the model's frame rate, and the scene frame
    they end at), and a curve object as the root's path. The pose, keys and continuation need an
    armature that the add-on has animated (it knows where the model's keypoints sit on its bones)."""
    if not (start_from_pose or use_keyframes or continue_action or path is not None):
        return None
    if continue_action and (start_from_pose or use_keyframes):
        raise MasError("Continue the active action begins where that action ends: use it without "
                       "Start from the current pose and Through its keyframes")
    info = model_list.model_info(model, models_folder)
    out: dict = {"layout": info.layout}
    if start_from_pose or use_keyframes or continue_action:
        check_target(target)
        if "mas_markers" not in target or target.get("mas_layout") != info.layout:
            raise MasError(f"{target.name} has no {info.layout} keypoints the add-on knows of: start from a pose or "
                           f"in-between keys on a character made or driven by Generate Motion with this model")
        names = get_layout(info.layout).joints
        sc = bpy.context.scene
        if start_from_pose:
            out["start_pose"] = scene.armature_keypoints(target, names)
        if use_keyframes:
            frames = [f for f in scene.keyed_frames(target) if 0 <= f - sc.frame_start < seconds * scene_fps()]
            if not frames:
                raise MasError(f"{target.name}'s active action has no keyframes within the {seconds:g} s to generate")
            now = sc.frame_current
            try:
                out["keys"] = {}
                for f in frames:
                    sc.frame_set(f)
                    out["keys"][f - sc.frame_start] = scene.armature_keypoints(target, names)
            finally:
                sc.frame_set(now)
        if continue_action:
            out["continue"] = action_end(target, names, scene_fps() / info.fps)
    if path is not None:
        if getattr(path, "type", None) != "CURVE":
            raise MasError(f"the root path must be a curve object, not {getattr(path, 'name', path)!r}")
        origin = np.array(target.matrix_world.translation if target is not None else (location or (0.0, 0.0, 0.0)))[:2]
        try:
            out["path"] = scene.curve_points(path) - origin
        except ValueError as e:
            raise MasError(str(e)) from None
    return out


def action_end(obj, names, step: float) -> dict:
    """The end of ``obj``'s active action as a motion to continue: {"joints": the keypoints at its
    last START_FRAMES frames at the model's frame rate (``step`` scene frames apart; START_FRAMES x
    joints x 3, metres), "frame": the scene frame of its last key, "start": the scene frame where
    the new motion, which begins with those frames, starts}."""
    from mas_engine.constraints import START_FRAMES      # here: the engine needs torch, registering does not

    keyed = scene.keyed_frames(obj)
    if not keyed:
        raise MasError(f"{obj.name} has no active action with keys to continue: select an armature that plays one")
    last = keyed[-1]
    sc = bpy.context.scene
    now = sc.frame_current
    joints = []
    try:
        for k in range(START_FRAMES):
            t = last - (START_FRAMES - 1 - k) * step
            scene.set_frame(t)
            joints.append(scene.armature_keypoints(obj, names))
    finally:
        sc.frame_set(now)
    return {"joints": np.stack(joints), "frame": last, "start": last - (START_FRAMES - 1) * step}
