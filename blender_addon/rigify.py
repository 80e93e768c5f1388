"""Driving a generated Rigify control rig: the motion goes onto its controls, not its bones.

A generated Rigify rig deforms through ``DEF-`` bones that follow ``ORG-`` bones (copies of the
metarig's) through mechanism bones, all moved by constraints from the controls an animator keys:
FK controls, IK targets and poles, torso, hips, chest, neck and head. Keys on ``DEF-`` or ``ORG-``
bones would do nothing, so the motion is fitted to the ``ORG-`` skeleton (the metarig's rest, named
as in the metarig) and then written onto the controls:

1. a temporary helper armature holds the ORG skeleton, plays the fitted track (``scene.apply_track``)
   and carries, under each ORG bone, a copy of every control that bone drives (the control's rest:
   ``control = bone(t) @ bone_rest^-1 @ control_rest``), and one bone per IK pole, keyed where the
   pole must be (in the plane of the limb, in front of the elbow or knee);
2. each control gets a Copy Transforms constraint to its copy; frame by frame the rig is evaluated
   and each control's matrix is read back relative to its (evaluated) parent, which is what its
   channels must hold (``Object.convert_space``);
3. the constraints and the helper are removed and the values keyed as one new action, with the
   IK/FK switches keyed to the chosen mode (FK and IK controls are both keyed, so switching later
   keeps the motion), and the IK chains' stretch keyed off (``_ik_stretch_bones``), so that IK plays
   the motion as exactly as FK.

Only the Rigify rig types of the human metarigs are known (limbs.arm, limbs.leg, spines.basic_spine,
spines.super_head, basic.super_copy shoulders); a control the rig lacks is skipped.
"""
from __future__ import annotations

import numpy as np

import bpy

from . import compat, scene

ORG = "ORG-"
SIDES = (".L", ".R")

# control -> the ORG bone (metarig name) whose motion it follows; {S}: the side suffix
LIMB_CONTROLS = {
    "upper_arm_fk{S}": "upper_arm{S}", "forearm_fk{S}": "forearm{S}", "hand_fk{S}": "hand{S}",
    "thigh_fk{S}": "thigh{S}", "shin_fk{S}": "shin{S}", "foot_fk{S}": "foot{S}", "toe_fk{S}": "toe{S}",
    "upper_arm_ik{S}": "upper_arm{S}", "hand_ik{S}": "hand{S}",
    "thigh_ik{S}": "thigh{S}", "foot_ik{S}": "foot{S}", "toe_ik{S}": "toe{S}",
    "shoulder{S}": "shoulder{S}",
}
SPINE_CONTROLS = {
    "torso": "spine", "hips": "spine", "chest": "spine.002",
    "spine_fk": "spine", "spine_fk.001": "spine.001", "spine_fk.002": "spine.002", "spine_fk.003": "spine.003",
    "neck": "spine.004", "head": "spine.006",
}
# IK limbs: (the bone holding the IK/FK switch, the pole control, the chain's three ORG bones)
LIMBS = (("upper_arm_parent{S}", "upper_arm_ik_target{S}", ("upper_arm{S}", "forearm{S}", "hand{S}")),
         ("thigh_parent{S}", "thigh_ik_target{S}", ("thigh{S}", "shin{S}", "foot{S}")))
HELPER = "MAS control copy"          # the name of the constraints we add (and remove)
SWITCHES = ("IK_FK", "pole_vector", "IK_Stretch")


def _switch_values(limbs_mode: str) -> dict[str, float]:
    """The limb settings keyed with the motion: IK or FK, the pole target on, and Rigify's
    ``IK_Stretch`` at 1. At 0 it turns on a Limit Distance that keeps the IK target within the rest
    pose's distance from the limb's root: an arm straighter than the metarig's rest then falls 5 mm
    short and its elbow lands 3 cm off. The chain cannot stretch anyway: see ``_ik_stretch_bones``."""
    return {"IK_FK": 1.0 if limbs_mode == "FK" else 0.0, "pole_vector": 1.0, "IK_Stretch": 1.0}


def _ik_stretch_bones(obj, limbs) -> list[str]:
    """The bones of the limbs' IK chains that may stretch (``ik_stretch`` > 0), keyed to 0 with the
    motion. Rigify gives them a fixed 0.1 (not driven by ``IK_Stretch``); Blender's solver then
    stretches a nearly straight limb by about 0.2% instead of bending it, which moves its knee or
    elbow by 1-3 cm. The chains are found from each limb's middle ORG bone: the Copy Transforms
    source that carries an IK constraint, and its parents along the constraint's chain."""
    out = []
    for _, _, (_, middle, _) in limbs:
        for con in obj.pose.bones[ORG + middle].constraints:
            source = obj.pose.bones.get(con.subtarget) if con.type == "COPY_TRANSFORMS" else None
            iks = [c for c in source.constraints if c.type == "IK"] if source else []
            if not iks:
                continue
            chain = [source] + list(source.parent_recursive)
            for bone in chain[:max(c.chain_count for c in iks) or len(chain)]:    # a chain of 0: up to the root
                if bone.ik_stretch > 0 and bone.name not in out:
                    out.append(bone.name)
    return out


def is_control_rig(obj) -> bool:
    """A generated Rigify rig: its armature carries Rigify's ``rig_id`` and ``ORG-`` bones."""
    return (getattr(obj, "type", None) == "ARMATURE" and "rig_id" in obj.data
            and any(b.name.startswith(ORG) for b in obj.data.bones))


def org_skeleton(obj) -> dict:
    """The rig's ``ORG-`` bones as plain data for the fit (``scene.read_skeleton``'s format), named
    as in the metarig ("upper_arm.L"), each under its nearest ``ORG-`` ancestor or else the ``ORG-``
    bone whose tail it starts at (Rigify parents spine ORG bones to mechanism bones)."""
    full = scene.read_skeleton(obj)
    org = [i for i, n in enumerate(full["bones"]) if n.startswith(ORG)]
    index = {full["bones"][i]: k for k, i in enumerate(org)}
    heads, tails = full["heads"][org], full["tails"][org]
    parents = []
    for k, i in enumerate(org):
        bone, parent = obj.data.bones[full["bones"][i]].parent, -1
        while bone is not None and parent < 0:
            parent = index.get(bone.name, -1)
            bone = bone.parent
        if parent < 0:
            touching = np.nonzero(np.linalg.norm(tails - heads[k], axis=1) < 1e-4)[0]
            parent = int(touching[0]) if len(touching) and touching[0] != k else -1
        parents.append(parent)
    return {"name": obj.name, "bones": [full["bones"][i][len(ORG):] for i in org], "parents": parents,
            "heads": heads, "tails": tails}


def _driven(obj) -> dict[str, str]:
    """{control: ORG bone it follows (metarig name)} for the controls this rig has."""
    pairs = dict(SPINE_CONTROLS)
    for S in SIDES:
        pairs.update({c.format(S=S): b.format(S=S) for c, b in LIMB_CONTROLS.items()})
    return {c: b for c, b in pairs.items() if c in obj.pose.bones and ORG + b in obj.data.bones}


def _limbs(obj) -> list[tuple[str, str, tuple[str, str, str]]]:
    out = []
    for S in SIDES:
        for switch, pole, chain in LIMBS:
            names = (switch.format(S=S), pole.format(S=S), tuple(b.format(S=S) for b in chain))
            if names[0] in obj.pose.bones and names[1] in obj.pose.bones and all(ORG + b in obj.data.bones for b in names[2]):
                out.append(names)
    return out


def _helper(obj, skeleton: dict, driven: dict[str, str], poles: list[str]):
    """The helper armature (see the module's docstring), at ``obj``'s place, in the scene."""
    helper = bpy.data.objects.new("MAS helper", bpy.data.armatures.new("MAS helper"))
    bpy.context.scene.collection.objects.link(helper)
    helper.matrix_world = obj.matrix_world
    with scene.editing(helper) as edit_bones:
        made = {}

        def copy(name, rest_bone, parent=None):
            eb = edit_bones.new(name)
            eb.head, eb.tail = rest_bone.head_local, rest_bone.tail_local
            eb.align_roll(rest_bone.z_axis)
            eb.parent = parent
            made[name] = eb

        for name in skeleton["bones"]:
            copy(name, obj.data.bones[ORG + name])
        for k, name in enumerate(skeleton["bones"]):
            if skeleton["parents"][k] >= 0:
                made[name].parent = made[skeleton["bones"][skeleton["parents"][k]]]
        for control, bone in driven.items():
            copy(">" + control, obj.data.bones[control], made[bone])
        for pole in poles:
            copy(">" + pole, obj.data.bones[pole])
    for pb in helper.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return helper


def _pole_positions(helper, limbs, frames) -> dict[str, np.ndarray]:
    """Where each IK pole must be at each frame (armature space, frames x 3): in the limb's plane,
    on the bent side of its middle joint, as far from it as at rest. A straight limb keeps the
    direction of the frame before."""
    heads = {c: [] for _, _, chain in limbs for c in chain}
    for f in frames:
        scene.set_frame(f)
        for c in heads:
            heads[c].append(np.array(helper.pose.bones[c].head))
    out = {}
    for _, pole, (a, b, c) in limbs:
        A, B, C = (np.array(heads[x]) for x in (a, b, c))
        rest = helper.data.bones
        distance = (rest[">" + pole].head_local - rest[b].head_local).length
        rest_dir = np.array(rest[">" + pole].head_local - rest[b].head_local) / max(distance, 1e-9)
        pos, last = [], rest_dir
        for k in range(len(frames)):
            axis = C[k] - A[k]
            axis /= max(np.linalg.norm(axis), 1e-9)
            out_of_line = (B[k] - A[k]) - np.dot(B[k] - A[k], axis) * axis
            n = np.linalg.norm(out_of_line)
            if n > 1e-3 * distance:
                last = out_of_line / n
            pos.append(B[k] + last * distance)
        out[pole] = np.array(pos)
    return out


def _key_poles(helper, positions: dict[str, np.ndarray], frames) -> None:
    channels = compat.assign_action(helper, helper.animation_data.action)
    for pole, pos in positions.items():
        rest = helper.data.bones[">" + pole]
        local = (pos - np.array(rest.head_local)) @ np.array(rest.matrix_local.to_3x3())     # bone's own axes
        scene.write_keys(channels, f'pose.bones[">{pole}"].location', frames, local, ">" + pole)
    compat.bind_slot(helper, helper.animation_data.action)


def apply_to_controls(obj, track, action_name: str, frame_start: int = 1, key_tolerance: float = 0.0,
                      limbs_mode: str = "FK"):
    """Key ``track`` (fitted to ``org_skeleton(obj)``) on the controls of Rigify rig ``obj`` as a new
    action (made active); returns it. ``limbs_mode``: "FK" or "IK", what the limbs' IK/FK switches
    are keyed to (both kinds of control are keyed; IK uses the pole targets). The rig is changed
    only by the new action: the helper and the constraints are removed whatever happens."""
    driven = _driven(obj)
    limbs = _limbs(obj)
    poles = [pole for _, pole, _ in limbs]
    skeleton = org_skeleton(obj)      # all ORG bones: those the fit left out stay at rest under their parent
    F = len(track.root)
    frames = np.arange(frame_start, frame_start + F, dtype=np.float64)
    sc = bpy.context.scene
    now = sc.frame_current
    helper = _helper(obj, skeleton, driven, poles)
    added, helper_action, switches = [], None, {}
    previous = obj.animation_data.action if obj.animation_data else None
    try:
        helper_action = scene.apply_track(helper, track, "MAS helper", frame_start)
        _key_poles(helper, _pole_positions(helper, limbs, frames), frames)
        for switch, _, _ in limbs:       # the rig's switches as the motion wants them while baking
            pb = obj.pose.bones[switch]
            switches[switch] = {k: pb[k] for k in SWITCHES if k in pb}
            for k, value in _switch_values(limbs_mode).items():
                if k in pb:
                    pb[k] = type(pb[k])(value)
        if obj.animation_data is not None:
            obj.animation_data.action = None        # the user's keys must not fight the constraints
        controls = list(driven) + poles
        for c in controls:
            con = obj.pose.bones[c].constraints.new("COPY_TRANSFORMS")
            con.name, con.target, con.subtarget = HELPER, helper, ">" + c
            added.append((c, con))
        local = {c: [] for c in controls}
        for f in frames:
            scene.set_frame(f)
            for c in controls:
                pb = obj.pose.bones[c]
                local[c].append(np.array(obj.convert_space(pose_bone=pb, matrix=pb.matrix, from_space="POSE", to_space="LOCAL")))
    finally:
        for c, con in added:
            obj.pose.bones[c].constraints.remove(con)
        for switch, values in switches.items():
            for k, v in values.items():
                obj.pose.bones[switch][k] = v
        scene.remove([helper] + ([helper_action] if helper_action is not None else []))
        if obj.animation_data is not None:
            obj.animation_data.action = previous
        sc.frame_set(now)
    return _key_controls(obj, local, limbs, limbs_mode, action_name, frames, key_tolerance, track.armature.scale)


def _key_controls(obj, local, limbs, limbs_mode, action_name, frames, key_tolerance, scale):
    """The baked local matrices ({control: frames x 4 x 4}) as a new action on ``obj``: rotations
    in each control's own rotation mode, locations where a control moves off its rest (IK targets,
    poles, torso), and the limbs' switches and IK chains' stretch (one key each)."""
    import torch      # here, not at the top: the add-on registers before torch is installed

    from retarget.rotations import quaternion_from_matrix

    poles = {pole for _, pole, _ in limbs}

    action = bpy.data.actions.new(action_name)
    try:
        channels = compat.assign_action(obj, action)
        for c, mats in local.items():
            M = np.array(mats)
            pb = obj.pose.bones[c]
            loc = M[:, :3, 3]
            if not pb.bone.use_connect and np.abs(loc).max() > 1e-5:
                scene.write_keys(channels, f'pose.bones["{c}"].location', frames, loc, c,
                                 key_tolerance / 100.0 / scale if key_tolerance else 0.0)
            if c in poles:                        # a pole: a position only
                continue
            R = M[:, :3, :3] / np.linalg.norm(M[:, :3, :3], axis=1, keepdims=True)
            q = scene.continuous_quaternions(quaternion_from_matrix(torch.from_numpy(np.ascontiguousarray(R))).numpy())
            path, v, tol = scene.rotation_channels(pb, q, key_tolerance)
            scene.write_keys(channels, f'pose.bones["{c}"].{path}', frames, v, c, tol)
        for switch, _, _ in limbs:
            pb = obj.pose.bones[switch]
            for k, value in _switch_values(limbs_mode).items():
                if k in pb:
                    fc = compat.new_fcurve(channels, f'pose.bones["{switch}"]["{k}"]', 0, switch)
                    fc.keyframe_points.insert(frames[0], value)
        for bone in _ik_stretch_bones(obj, limbs):     # keyed like the switches: another action may key it back
            fc = compat.new_fcurve(channels, f'pose.bones["{bone}"].ik_stretch', 0, bone)
            fc.keyframe_points.insert(frames[0], 0.0)
        compat.bind_slot(obj, action)
    except Exception:
        bpy.data.actions.remove(action)
        raise
    action.use_fake_user = False
    return action
