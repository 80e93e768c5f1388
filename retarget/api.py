"""Retargeting a generated motion onto a rig: what ``mas retarget`` runs.

Input: a motion file (``mas_engine.motion_io``: joints frames x J x 3, metres, Z up, fps,
layout). Output: a RotationTrack, written as BVH or as a rotation ``.npz``:
- ``root``: frames x 3, the root bone's head (metres, Z up);
- ``quaternions``: frames x bones x 4 (w, x, y, z), local rotations against the rest pose;
- ``fps``, ``bone_names``, ``parents``, ``rest_heads``, ``rest_tails`` (bones x 3, metres, Z up).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mas_engine.errors import MasError
from rigs.armature import Armature, horse_armature, horse_proportions, human_armature, human_proportions
from rigs.keypoints import KeypointLayout, get_layout

from mas_engine.metrics import foot_skating, jitter

from .contact import detect_contacts, pin_contacts
from .fit import RotationTrack, fit_armature, marker_error

FEET = {"human16": ("left_ankle", "right_ankle"),
        "horse17": ("left_front_hoof", "right_front_hoof", "left_back_hoof", "right_back_hoof")}

# human keypoint -> bone, for armatures with Mixamo-style names ("mixamorig:" prefixes are ignored)
MIXAMO_MAP = {"pelvis": "Hips", "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_ankle": "LeftFoot",
              "right_hip": "RightUpLeg", "right_knee": "RightLeg", "right_ankle": "RightFoot", "neck": "Neck",
              "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand",
              "right_shoulder": "RightArm", "right_elbow": "RightForeArm", "right_wrist": "RightHand"}


def builtin_rig(name: str, joints: np.ndarray, layout: KeypointLayout) -> Armature:
    """A built-in rig with the motion's own proportions."""
    if name == "human":
        if layout.name != "human16":
            raise MasError(f"rig 'human' is driven by human16 keypoints; this motion uses {layout.name}")
        return human_armature(human_proportions(joints, layout))
    if name == "horse":
        if layout.name != "horse17":
            raise MasError(f"rig 'horse' is driven by horse17 keypoints; this motion uses {layout.name}")
        return horse_armature(horse_proportions(joints, layout))
    raise MasError(f"unknown rig {name!r}; built-in rigs: human, horse, smpl (or give a BVH file of your armature)")


def armature_from_bvh(path, joints: np.ndarray, layout: KeypointLayout) -> Armature:
    """A user's armature from the rest pose of a BVH file with Mixamo-style bone names,
    scaled so its legs match the motion's."""
    from mas_engine.bvh import read_bvh
    from mas_engine.capture import Y_UP_TO_Z_UP

    if layout.name != "human16":
        raise MasError(f"armatures from BVH files are mapped with human bone names; this motion uses {layout.name}")
    m = read_bvh(path)
    skel = m.skeleton
    names = [n.split(":")[-1] for n in skel.names]
    keep = [i for i, n in enumerate(skel.names) if not n.endswith("_end")]
    missing = [b for b in MIXAMO_MAP.values() if b not in names]
    if missing:
        raise MasError(f"{path}: no bone(s) named {', '.join(missing)}; name the armature's bones in the "
                       f"Mixamo style (Hips, LeftUpLeg, LeftLeg, LeftFoot, ..., LeftArm, LeftForeArm, LeftHand)")
    rest = np.zeros((len(skel.names), 3))
    for j, p in enumerate(skel.parents):
        rest[j] = skel.offsets[j] + (rest[p] if p >= 0 else 0)
    rest = rest @ Y_UP_TO_Z_UP.T
    remap = {old: new for new, old in enumerate(keep)}
    parents = tuple(remap[skel.parents[i]] if skel.parents[i] >= 0 else -1 for i in keep)
    heads = rest[keep]
    tails = heads.copy()
    for new, old in enumerate(keep):
        kids = [c for c, p in enumerate(skel.parents) if p == old]
        tails[new] = rest[kids[0]] if kids else heads[new] + (heads[new] - heads[parents[new]]) * 0.3
    bones = tuple(names[i] for i in keep)
    # scale the rig so that its legs are as long as the motion's
    i = bones.index
    rig_leg = np.linalg.norm(heads[i("LeftUpLeg")] - heads[i("LeftLeg")]) + np.linalg.norm(heads[i("LeftLeg")] - heads[i("LeftFoot")])
    p = human_proportions(joints, layout)
    s = (p["thigh"] + p["shin"]) / max(rig_leg, 1e-6)
    heads, tails = heads * s, tails * s
    markers = {kp: (b, heads[i(b)]) for kp, b in MIXAMO_MAP.items()}
    if "Head" in bones:
        markers["head"] = ("Head", tails[i("Head")])
    lateral = heads[i("LeftUpLeg")] - heads[i("RightUpLeg")]
    lateral /= np.linalg.norm(lateral)
    forward = np.cross(lateral, [0.0, 0.0, 1.0])

    def hinge(parent, child, bend):
        d = heads[i(child)] - heads[i(parent)]
        a = np.cross(d / np.linalg.norm(d), bend)
        return a / max(np.linalg.norm(a), 1e-9)
    hinges = {"LeftLeg": hinge("LeftUpLeg", "LeftLeg", -forward), "RightLeg": hinge("RightUpLeg", "RightLeg", -forward),
              "LeftForeArm": hinge("LeftArm", "LeftForeArm", forward), "RightForeArm": hinge("RightArm", "RightForeArm", forward)}
    return Armature(Path(path).stem, bones, parents, heads, tails, "human16", markers, hinges)


def retarget(motion: dict, rig: str = "human", in_place: bool = False, foot_lock: bool = True,
             iters: int = 30, smpl_model=None) -> tuple[RotationTrack, dict]:
    """Fit a rig to a motion (as load_motion returns it). Returns the track and quality numbers:
    marker error (m), foot skating and jitter before and after.

    rig: "human", "horse", "smpl" (needs ``smpl_model`` or MAS_SMPL_MODEL) or a BVH file.
    """
    try:
        layout = get_layout(str(motion.get("layout", "")))
    except KeyError as e:
        raise MasError(str(e.args[0])) from None
    if list(layout.joints) != [str(n) for n in motion["joint_names"]]:
        raise MasError(f"the motion's joint names do not match its layout {layout.name}")
    joints = np.asarray(motion["joints"], dtype=np.float64)
    fps = float(motion["fps"])
    if not fps > 0:
        raise MasError(f"the motion's frame rate {fps} is not positive")
    if in_place:
        r = layout.root
        joints = joints - np.concatenate([joints[:, r:r + 1, :2], np.zeros_like(joints[:, r:r + 1, :1])], -1)
    feet = [layout.index(n) for n in FEET.get(layout.name, ())]
    if rig == "smpl":
        from .smpl import fit_smpl

        def fit(targets, weights):
            return fit_smpl(targets, layout, fps, smpl_model, weights=weights)[0]
    else:
        arm = armature_from_bvh(rig, joints, layout) if str(rig).lower().endswith(".bvh") else builtin_rig(rig, joints, layout)

        def fit(targets, weights):
            return fit_armature(targets, layout, arm, fps, iters=iters, weights=weights)

    def pinned(contacts, weight=10.0):
        weights = np.ones(joints.shape[:2])
        weights[:, feet] += (weight - 1.0) * contacts   # planted feet stay planted despite the smoothing
        return pin_contacts(joints, feet, contacts), weights

    def skating(track):
        return foot_skating(track.markers([layout.joints[f] for f in feet]), fps)

    if foot_lock and feet:
        skate0, jitter0 = foot_skating(joints[:, feet], fps), jitter(joints, fps)

        def violation(track):
            """How much worse than the input (relative), in foot skating and in jitter; 0: no worse."""
            return (max(0.0, skating(track) - skate0) / max(skate0, 1e-3)
                    + max(0.0, jitter(track.markers(list(layout.joints)), fps) - jitter0) / max(jitter0, 1e-3))

        contacts = detect_contacts(joints, feet, fps)
        candidates = [(fit(*pinned(contacts)), contacts)]
        # jittery input hides contacts: find them again on the smooth fitted feet
        fitted_feet = np.zeros_like(joints)
        fitted_feet[:, feet] = candidates[0][0].markers([layout.joints[f] for f in feet])
        again = detect_contacts(fitted_feet, feet, fps)
        candidates.append((fit(*pinned(again)), again))
        # a walk whose feet never stop: pin harder, until a fit is no worse than the input in both measures
        for weight in (100.0, 1000.0):
            if min(violation(t) for t, _ in candidates) == 0.0:
                break
            best_contacts = min(candidates, key=lambda c: skating(c[0]))[1]
            candidates.append((fit(*pinned(best_contacts, weight)), best_contacts))
        track = min((t for t, _ in candidates), key=lambda t: (violation(t), skating(t)))
    else:
        track = fit(joints, None)
    names = [n for n in layout.joints if n in track.armature.markers]
    fitted = track.markers(names)
    cols = [layout.index(n) for n in names]
    report = {"marker_error_m": marker_error(track, joints, layout),
              "jitter_before": jitter(joints[:, cols], fps), "jitter_after": jitter(fitted, fps)}
    if feet:
        report["skating_before"] = foot_skating(joints[:, feet], fps)
        report["skating_after"] = skating(track)
    return track, report


def save_track(path, track: RotationTrack) -> Path:
    """Write a rotation track .npz atomically."""
    arm = track.armature
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, root=track.root.astype(np.float32), quaternions=track.quaternions.astype(np.float32),
                 fps=np.float32(track.fps), bone_names=np.array(arm.bones), parents=np.array(arm.parents, np.int32),
                 rest_heads=arm.heads.astype(np.float32), rest_tails=arm.tails.astype(np.float32),
                 rig=np.array(arm.name))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_track(path, track: RotationTrack) -> Path:
    """BVH or .npz by the path's suffix."""
    from .bvh_writer import write_bvh

    suffix = Path(path).suffix.lower()
    if suffix == ".bvh":
        return write_bvh(path, track)
    if suffix == ".npz":
        return save_track(path, track)
    raise MasError(f"output {path}: use a .bvh or .npz file name")
