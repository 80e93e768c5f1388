"""Retargeting a generated motion onto a rig: what ``mas retarget`` runs.

Input: a motion file (``mas_engine.motion_io``: joints frames x J x 3, metres, Z up, fps,
layout). Output: a RotationTrack, written as BVH or as a rotation ``.npz``:
- ``root``: frames x 3, the root bone's head (metres, Z up);
- ``quaternions``: frames x bones x 4 (w, x, y, z), local rotations against the rest pose;
- ``fps``, ``bone_names``, ``parents``, ``rest_heads``, ``rest_tails`` (bones x 3, metres, Z up);
- ``prop_<name>``: frames x 3, keypoints that are not on the body (``prop_ball``), metres, Z up.

A ``coco17_ball`` motion drives the human rig: its body is converted to ``human16``
(``rigs.keypoints.coco17_to_human16``) and the ball becomes a prop of the track.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mas_engine.atomic import atomic_write
from mas_engine.errors import MasError
from mas_engine.metrics import foot_skating, jitter
from mas_engine.motion_io import Motion
from rigs.armature import Armature, horse_armature, horse_proportions, human_armature, human_proportions
from rigs.bonemaps import detect_preset
from rigs.keypoints import KeypointLayout, body_keypoints, rig_of

from .contact import foot_locked_fit
from .fit import RotationTrack, fit_armature, marker_error

def builtin_rig(name: str, joints: np.ndarray, layout: KeypointLayout) -> Armature:
    """A built-in rig with the motion's own proportions."""
    if name == "human":
        if layout.name != "human16":   # (coco17_ball motions arrive here converted, see rigs.keypoints.body_keypoints)
            raise MasError(f"rig 'human' is driven by human16 keypoints; this motion uses {layout.name}")
        return human_armature(human_proportions(joints, layout))
    if name == "horse":
        if layout.name != "horse17":
            raise MasError(f"rig 'horse' is driven by horse17 keypoints; this motion uses {layout.name}")
        return horse_armature(horse_proportions(joints, layout))
    raise MasError(f"unknown rig {name!r}; built-in rigs: human, horse, smpl (or give a BVH file of your armature)")


def armature_from_bvh(path, joints: np.ndarray, layout: KeypointLayout) -> Armature:
    """A user's armature from the rest pose of a BVH file, its bones mapped by name (the preset that
    fits best: Mixamo, Rigify, SMPL, Unreal or the built-in names), scaled to the motion."""
    from mas_engine.bvh import Y_UP_TO_Z_UP, read_bvh

    if layout.name != "human16":
        raise MasError(f"armatures from BVH files are mapped with human bone names; this motion uses {layout.name}")
    skel = read_bvh(path).skeleton
    keep = [i for i, n in enumerate(skel.names) if not n.endswith("_end")]
    rest = np.zeros((len(skel.names), 3))
    for j, p in enumerate(skel.parents):
        rest[j] = skel.offsets[j] + (rest[p] if p >= 0 else 0)
    rest = rest @ Y_UP_TO_Z_UP.T
    remap = {old: new for new, old in enumerate(keep)}
    parents = [remap[skel.parents[i]] if skel.parents[i] >= 0 else -1 for i in keep]
    heads = rest[keep]
    tails = heads.copy()
    for new, old in enumerate(keep):
        kids = [c for c, p in enumerate(skel.parents) if p == old]
        tails[new] = rest[kids[0]] if kids else heads[new] + (heads[new] - heads[max(parents[new], 0)]) * 0.3
    names = [skel.names[i] for i in keep]
    _, bone_map = detect_preset("human", names)
    return armature_from_skeleton(Path(path).stem, names, parents, heads, tails, bone_map, joints, layout)


def _character_frame(heads: dict[str, np.ndarray], left: str, right: str) -> np.ndarray:
    """3 x 3, columns: the character's left, forward and up directions (Z up), from a left/right bone pair."""
    lateral = heads[left] - heads[right]
    lateral[2] = 0.0
    lateral /= max(np.linalg.norm(lateral), 1e-9)
    up = np.array([0.0, 0.0, 1.0])
    return np.stack([lateral, np.cross(lateral, up), up], axis=1)


def armature_from_skeleton(name: str, bones, parents, heads: np.ndarray, tails: np.ndarray,
                           bone_map: dict[str, str], joints: np.ndarray, layout: KeypointLayout) -> Armature:
    """Someone else's armature as an ``Armature`` the fit can drive, scaled to the motion.

    bones, parents (-1 for roots), heads, tails (bones x 3): the armature's rest pose in metres,
    Z up (any facing). bone_map: {built-in bone: user bone} (``rigs.bonemaps``). Only mapped bones
    are kept, each under its nearest mapped ancestor: the bones between stay at rest, so a
    mapped bone's rotation relative to that ancestor is the one to key. Keypoint markers sit
    where the built-in rig has them: at the mapped bone's head or tail. The returned rest is
    scaled by the leg-length ratio; divide the fitted root by ``armature.scale`` for the user's rig.
    """
    from rigs.bonemaps import missing_bones

    layout, joints = body_keypoints(joints, layout)
    rig = rig_of(layout.name)
    if not rig:
        raise MasError(f"no built-in rig to map {layout.name} keypoints onto an armature")
    missing = missing_bones(rig, bone_map)
    if missing:
        raise MasError(f"armature {name}: the bone map has no bone for {', '.join(missing)}; map them "
                       f"(or pick the preset that matches the armature's naming)")
    user_index = {b: i for i, b in enumerate(bones)}
    absent = [u for u in bone_map.values() if u not in user_index]
    if absent:
        raise MasError(f"armature {name} has no bone(s) {', '.join(absent)} that the bone map names")
    builtin = builtin_rig(rig, joints, layout)
    to_builtin = {u: b for b, u in bone_map.items()}

    def depth(i):
        d = 0
        while parents[i] >= 0:
            i, d = parents[i], d + 1
        return d

    kept = sorted((user_index[u] for u in bone_map.values()), key=lambda i: (depth(i), i))
    new_parent = []
    for i in kept:
        p = parents[i]
        while p >= 0 and bones[p] not in to_builtin:
            p = parents[p]
        new_parent.append(p)
    roots = [bones[i] for i, p in zip(kept, new_parent) if p < 0]
    if len(roots) > 1:
        raise MasError(f"armature {name}: mapped bones {', '.join(roots)} share no mapped parent; map the bone "
                       f"that carries them all (the hips)")
    pos = {i: k for k, i in enumerate(kept)}
    parents_k = tuple(pos[p] if p >= 0 else -1 for p in new_parent)
    names_k = tuple(bones[i] for i in kept)
    H = np.asarray(heads, np.float64)[kept]
    T = np.asarray(tails, np.float64)[kept]
    # scale so that the legs are as long as the motion's
    legs = [b for b in builtin.bones if b.endswith(("UpLeg", "Leg", "Upper", "Lower")) and b in bone_map]

    def end(b: str) -> np.ndarray:
        """Where the user's bone for b ends: the head of the next mapped bone down the leg, else its tail."""
        kids = [c for c in builtin.bones if builtin.parents[builtin.index(c)] == builtin.index(b) and c in bone_map]
        return H[idx(bone_map[kids[0]])] if kids else T[idx(bone_map[b])]

    idx = names_k.index
    rig_leg = sum(np.linalg.norm(end(b) - H[idx(bone_map[b])]) for b in legs)
    ref_leg = sum(np.linalg.norm(builtin.tails[builtin.index(b)] - builtin.heads[builtin.index(b)]) for b in legs)
    s = ref_leg / max(rig_leg, 1e-9)
    H, T = H * s, T * s
    markers = {}
    for kp, (b, point) in builtin.markers.items():
        u = bone_map.get(b)
        if u is None:
            continue
        if np.allclose(point, builtin.heads[builtin.index(b)], atol=1e-6):
            markers[kp] = (u, H[idx(u)])
        elif np.allclose(point, builtin.tails[builtin.index(b)], atol=1e-6):
            markers[kp] = (u, T[idx(u)])
    # hinge axes: the built-in rig's bend directions, expressed in this armature's facing
    pair = ("LeftUpLeg", "RightUpLeg") if rig == "human" else ("LeftBackUpper", "RightBackUpper")
    frame_b = _character_frame({b: builtin.heads[builtin.index(b)] for b in pair}, *pair)
    frame_u = _character_frame({b: H[idx(bone_map[b])] for b in pair}, *pair)
    hinges = {}
    for b, axis in builtin.hinges.items():
        u = bone_map.get(b)
        pb = builtin.parents[builtin.index(b)]
        if u is None or builtin.bones[pb] not in bone_map:
            continue
        d_b = builtin.heads[builtin.index(b)] - builtin.heads[pb]
        bend = frame_u @ frame_b.T @ np.cross(axis, d_b / np.linalg.norm(d_b))
        d_u = H[idx(u)] - H[idx(bone_map[builtin.bones[pb]])]
        a = np.cross(d_u / np.linalg.norm(d_u), bend)
        hinges[u] = a / max(np.linalg.norm(a), 1e-9)
    flat = tuple(bone_map[b] for b in builtin.flat if b in bone_map)
    return Armature(name, names_k, parents_k, H, T, layout.name, markers, hinges, flat, scale=s)


BUILTIN_RIGS = ("human", "horse", "smpl")


def check_rig(rig, layout: KeypointLayout | None = None) -> None:
    """Raise MasError for a rig that cannot be used, before any work: a built-in name or an existing BVH file."""
    if isinstance(rig, Armature):
        return
    r = str(rig)
    if r in BUILTIN_RIGS:
        if layout is not None and r == "horse" and layout.name != "horse17":
            raise MasError(f"rig horse is for horse17 motions, not {layout.name}; use --rig human")
        if layout is not None and r in ("human", "smpl") and layout.name == "horse17":
            raise MasError(f"rig {r} is for human motions, not {layout.name}; use --rig horse")
        return
    if not r.lower().endswith(".bvh"):
        raise MasError(f"unknown rig {r!r}: use {', '.join(BUILTIN_RIGS)} or a .bvh file of your armature")
    if not Path(r).is_file():
        raise MasError(f"rig file {r} not found; give the path of a BVH file of your armature")


def retarget(motion: Motion | dict, rig: str = "human", in_place: bool = False, foot_lock: bool = True,
             iters: int = 30, smpl_model=None) -> tuple[RotationTrack, dict]:
    """Fit a rig to a motion (a ``Motion``, or a dict as load_motion returns it). Returns the track and quality numbers:
    marker error (m), foot skating and jitter before and after.

    rig: "human", "horse", "smpl" (needs ``smpl_model`` or MAS_SMPL_MODEL), a BVH file, or an
    ``Armature`` (e.g. from ``armature_from_skeleton``).
    """
    if isinstance(motion, dict):
        motion = Motion.from_dict(motion)
    joints, fps, layout = np.asarray(motion.joints, dtype=np.float64), float(motion.fps), motion.layout
    if in_place:
        r = layout.root
        joints = joints - np.concatenate([joints[:, r:r + 1, :2], np.zeros_like(joints[:, r:r + 1, :1])], -1)
    props = {n: joints[:, layout.index(n)].copy() for n in layout.optional}
    layout, joints = body_keypoints(joints, layout)     # e.g. COCO + ball: the body as the rig's keypoints
    feet = [layout.index(n) for n in layout.feet]
    fit = _fitter(rig, joints, layout, fps, iters, smpl_model)
    track = foot_locked_fit(fit, joints, layout, feet, fps) if foot_lock and feet else fit(joints, None)
    report = fit_report(track, joints, layout, feet, fps)
    track.props = props
    return track, report


def _fitter(rig, joints: np.ndarray, layout: KeypointLayout, fps: float, iters: int, smpl_model):
    """fit(targets, weights) -> RotationTrack for a rig: "smpl", an ``Armature``, a BVH file or a built-in name."""
    if rig == "smpl":
        from .smpl import fit_smpl

        return lambda targets, weights: fit_smpl(targets, layout, fps, smpl_model, weights=weights)[0]
    if isinstance(rig, Armature):
        if rig.layout != layout.name:
            raise MasError(f"armature {rig.name} is mapped for {rig.layout} keypoints; this motion uses {layout.name}")
        arm = rig
    elif str(rig).lower().endswith(".bvh"):
        arm = armature_from_bvh(rig, joints, layout)
    else:
        arm = builtin_rig(rig, joints, layout)
    return lambda targets, weights: fit_armature(targets, layout, arm, fps, iters=iters, weights=weights)


def fit_report(track: RotationTrack, joints: np.ndarray, layout: KeypointLayout, feet: list[int], fps: float) -> dict:
    """How well a fit keeps the keypoints (marker error, m) and how smooth it is, before and after."""
    names = [n for n in layout.joints if n in track.armature.markers]
    cols = [layout.index(n) for n in names]
    report = {"marker_error_m": marker_error(track, joints, layout),
              "jitter_before": jitter(joints[:, cols], fps), "jitter_after": jitter(track.markers(names), fps)}
    if feet:
        report["skating_before"] = foot_skating(joints[:, feet], fps)
        report["skating_after"] = foot_skating(track.markers([layout.joints[f] for f in feet]), fps)
    return report


def save_track(path, track: RotationTrack, overwrite: bool = True) -> Path:
    """Write a rotation track .npz atomically."""
    arm = track.armature
    return atomic_write(path, lambda tmp: np.savez(
        tmp, root=track.root.astype(np.float32), quaternions=track.quaternions.astype(np.float32),
        fps=np.float32(track.fps), bone_names=np.array(arm.bones), parents=np.array(arm.parents, np.int32),
        rest_heads=arm.heads.astype(np.float32), rest_tails=arm.tails.astype(np.float32),
        rig=np.array(arm.name), **{f"prop_{k}": v.astype(np.float32) for k, v in track.props.items()}), overwrite=overwrite)


def write_track(path, track: RotationTrack, overwrite: bool = True) -> Path:
    """BVH or .npz by the path's suffix; ``overwrite=False`` never replaces a file."""
    from .bvh_writer import write_bvh

    suffix = Path(path).suffix.lower()
    if suffix == ".bvh":
        return write_bvh(path, track, overwrite=overwrite)
    if suffix == ".npz":
        return save_track(path, track, overwrite)
    raise MasError(f"output {path}: use a .bvh or .npz file name")
