"""The add-on's Python API: what its operators run, callable from scripts and ``blender --background``.

    from blender_addon import api           # inside Blender: from bl_ext.user_default.mas_motion import api
    made = api.generate_motion(model="human", seed=3, seconds=4)
    made["objects"], made["action"], made["report"]

Every call computes with the one pipeline (``jobs.Job`` over ``mas_app.pipeline``), then builds
scene data on the calling (main) thread (``operation``): a failure or a cancel leaves the scene
as it was. Errors a user can fix are ``MasError`` with a one-line message.
"""
from __future__ import annotations

import bpy

from mas_engine import validate
from mas_engine.errors import MasError  # noqa: F401 - part of the API: what callers catch

from . import dependencies, scene
from .batch import Batch, batch_rows
from .jobs import pace_setting
from .operation import Motions, run
from .preferences import setup_paths
from .scene_requests import model_name, requests_for, scene_constraints


def ensure_engine() -> None:
    """MasError with the fix unless torch and the engine import (checked once, then cached)."""
    ok, line = dependencies.status()
    if not ok:
        setup_paths()
        ok, line = dependencies.refresh()
    if not ok:
        raise MasError(line)


def generate_motion(model="human", seed=0, seconds=4.0, views=5, steps=0, device="auto", in_place=False,
                    target=None, bone_map="auto", location=None, models_folder="", loop=False,
                    start_from_pose=False, use_keyframes=False, path=None, foot_lock=True, key_tolerance=0.0,
                    rigify_limbs="FK", continue_action=False, loop_travel=False, pace="data") -> dict:
    """Generate one motion into the current scene. target: an armature object to drive (None: a
    new built-in character at ``location``, default the 3D cursor). ``loop``: a seamless loop
    (Cycles modifiers); ``loop_travel``: a loop that may travel steadily, a walk cycle that goes on
    (its location curves repeat with an offset). On ``target``: ``start_from_pose`` begins in its current pose,
    ``use_keyframes`` passes through the poses of its active action's keyframes; ``path``: a curve
    object the root follows; ``foot_lock``: the foot-contact clean-up of the fit (planted feet stay
    put); ``continue_action``: on ``target``, a motion that continues its active action from its
    last key (the two play one after the other on an NLA track); ``key_tolerance`` (degrees, and
    cm for the root): keep only the keys that matter (0: a key on every frame). A generated Rigify
    rig as ``target`` is keyed on its controls (FK and IK; the limbs' IK/FK switches keyed to
    ``rigify_limbs``, "FK" or "IK"). ``pace``: how much the motion moves, "data" (each seed its own, as
    often as the training data has it) or "still", "calm", "lively", "liveliest" (``jobs.pace_setting``).
    Returns {"objects", "action", "report"}."""
    return run(motion_operation([seed], model, seconds, views, steps, device, in_place, target, bone_map, location,
                                models_folder, loop, start_from_pose, use_keyframes, path, foot_lock=foot_lock,
                                key_tolerance=key_tolerance, rigify_limbs=rigify_limbs,
                                continue_action=continue_action, loop_travel=loop_travel, pace=pace))[0]


def motion_operation(seeds, model="human", seconds=4.0, views=5, steps=0, device="auto", in_place=False, target=None,
                     bone_map="auto", location=None, models_folder="", loop=False, start_from_pose=False,
                     use_keyframes=False, path=None, foot_lock=True, key_tolerance=0.0, variants=False,
                     arrange="SIDE_BY_SIDE", spacing=1.5, rigify_limbs="FK", continue_action=False,
                     loop_travel=False, pace="data") -> Motions:
    """The operation behind generate_motion and generate_variants (what the operators run);
    ``variants``: the motions form a set to compare and keep one of (``keep_variant``)."""
    ensure_engine()
    validate.number("key tolerance (degrees)", key_tolerance, 0.0, 45.0)
    pace_setting(pace, 0)                   # an unknown pace is refused here, before any work
    if rigify_limbs not in ("FK", "IK"):
        raise MasError(f"rigify_limbs must be FK or IK, not {rigify_limbs!r}")
    loc = tuple(bpy.context.scene.cursor.location) if location is None else tuple(location)
    if continue_action and variants:
        raise MasError("Continue the active action makes one motion, not variants")
    # a continuation begins in the action's last poses; the foot clean-up would re-plant the feet
    # there and pop them by about 3 cm at the join (measured), so its fit is the plain one
    foot_lock = foot_lock and not continue_action
    wanted = scene_constraints(model, target, start_from_pose, use_keyframes, path, loc, seconds, models_folder,
                               continue_action)
    reqs = requests_for(seeds, model, seconds, views, steps, device, in_place, target, bone_map,
                        models_folder=models_folder, loop=loop, constraints=wanted, foot_lock=foot_lock,
                        loop_travel=loop_travel, pace=pace)
    if not variants:
        return Motions(reqs, target, loc, key_tolerance=key_tolerance, rigify_limbs=rigify_limbs)
    group = f"{model_name(reqs[0].model)}_seeds{reqs[0].seed}-{reqs[-1].seed}"
    return Motions(reqs, target, loc, "NLA" if target is not None else arrange, spacing, group, key_tolerance,
                   rigify_limbs)


def generate_variants(count=3, seed=0, arrange="SIDE_BY_SIDE", spacing=1.5, location=None, **settings) -> list[dict]:
    """``count`` motions with seeds seed, seed+1, ...: side by side (offset along X by ``spacing``) or
    as NLA tracks of one character (arrange="NLA"; always so on a ``target``). Keep one with
    ``keep_variant``."""
    if count < 1:
        raise MasError(f"variants: the count must be at least 1, got {count}")
    return run(motion_operation(range(seed, seed + count), location=location, variants=True, arrange=arrange,
                                spacing=spacing, **settings))


def keep_variant(obj, nla_index: int | None = None) -> list[str]:
    """Keep one variant and delete the others. Side by side: ``obj`` is the kept character (or its
    body). NLA: ``nla_index`` is the track to keep. Returns the names of what was removed."""
    if obj.type == "MESH" and obj.parent is not None:
        obj = obj.parent
    removed = []
    if nla_index is not None:
        ad = obj.animation_data
        if ad is None or not 0 <= nla_index < len(ad.nla_tracks):
            raise MasError(f"{obj.name} has no NLA track {nla_index}")
        keep = ad.nla_tracks[nla_index].strips[0].action
        for t in list(ad.nla_tracks):
            for s in t.strips:
                if s.action is not keep:
                    removed.append(s.action.name)
                    bpy.data.actions.remove(s.action)
            ad.nla_tracks.remove(t)
        ad.action = keep
        return removed
    group = obj.get("mas_group")
    if not group:
        raise MasError(f"{obj.name} is not one of a set of variants")
    doomed = [o for o in bpy.data.objects if o.get("mas_group") == group and o is not obj and o.parent is not obj]
    actions = {o.animation_data.action for o in doomed if o.animation_data and o.animation_data.action}
    removed = [o.name for o in doomed]
    scene.remove(doomed + list(actions))
    for o in [obj, *obj.children]:
        for k in ("mas_group", "mas_variant"):
            if k in o:
                del o[k]
    return removed


def batch_operation(folder, count=10, seed=0, settings_file="", rows=None, formats=("BVH",), overwrite=False,
                    target=None, **defaults) -> Batch:
    """The operation behind generate_batch (what the batch operator runs)."""
    ensure_engine()
    return Batch(batch_rows(count, seed, settings_file) if rows is None else rows, folder, formats, overwrite,
                 defaults, target)


def generate_batch(folder, count=10, seed=0, settings_file="", rows=None, formats=("BVH",), overwrite=False,
                   target=None, **defaults) -> dict:
    """Write motions into ``folder``: ``count`` seeds from ``seed``, or one per row of ``rows`` /
    ``settings_file`` (CSV or JSON). Returns the summary (written, skipped, failed with reasons,
    actions) that is also saved as ``batch_report.json``."""
    return run(batch_operation(folder, count, seed, settings_file, rows, formats, overwrite, target, **defaults))
