"""The rigs a motion can drive: the built-in ones, sized to the motion, and a user's armature
(from Blender's bones or a BVH file's rest pose) mapped onto a built-in rig through a bone map.
Rest poses in metres, Z up."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mas_engine.bvh import Y_UP_TO_Z_UP, read_bvh
from mas_engine.errors import MasError
from rigs.armature import Armature, horse_armature, horse_proportions, human_armature, human_proportions
from rigs.bonemaps import detect_preset, missing_bones
from rigs.keypoints import KeypointLayout, body_keypoints, rig_of


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
    layout, joints = body_keypoints(joints, layout)
    rig = rig_of(layout.name)
    if not rig:
        raise MasError(f"no built-in rig to map {layout.name} keypoints onto an armature")
    _check_bone_map(name, rig, bone_map, bones)
    builtin = builtin_rig(rig, joints, layout)
    kept, parents_k = _mapped_tree(name, bones, parents, bone_map)
    names_k = tuple(bones[i] for i in kept)
    mapped = {u: k for k, u in enumerate(names_k)}
    H = np.asarray(heads, np.float64)[kept]
    T = np.asarray(tails, np.float64)[kept]
    s = _leg_scale(builtin, bone_map, H, T, mapped)
    H, T = H * s, T * s
    markers = {}
    for kp, (b, point) in builtin.markers.items():
        u = bone_map.get(b)
        if u is None:
            continue
        if np.allclose(point, builtin.heads[builtin.index(b)], atol=1e-6):
            markers[kp] = (u, H[mapped[u]])
        elif np.allclose(point, builtin.tails[builtin.index(b)], atol=1e-6):
            markers[kp] = (u, T[mapped[u]])
    flat = tuple(bone_map[b] for b in builtin.flat if b in bone_map)
    return Armature(name, names_k, parents_k, H, T, layout.name, markers, _hinges(builtin, rig, bone_map, H, mapped),
                    flat, scale=s)


def _check_bone_map(name: str, rig: str, bone_map: dict[str, str], bones) -> None:
    missing = missing_bones(rig, bone_map)
    if missing:
        raise MasError(f"armature {name}: the bone map has no bone for {', '.join(missing)}; map them "
                       f"(or pick the preset that matches the armature's naming)")
    absent = [u for u in bone_map.values() if u not in set(bones)]
    if absent:
        raise MasError(f"armature {name} has no bone(s) {', '.join(absent)} that the bone map names")


def _mapped_tree(name: str, bones, parents, bone_map: dict[str, str]) -> tuple[list[int], tuple[int, ...]]:
    """(indices of the mapped bones, parents first; each one's parent among them, -1 for the root)."""
    user_index = {b: i for i, b in enumerate(bones)}
    mapped_names = set(bone_map.values())

    def depth(i):
        d = 0
        while parents[i] >= 0:
            i, d = parents[i], d + 1
        return d

    kept = sorted((user_index[u] for u in bone_map.values()), key=lambda i: (depth(i), i))
    new_parent = []
    for i in kept:
        p = parents[i]
        while p >= 0 and bones[p] not in mapped_names:
            p = parents[p]
        new_parent.append(p)
    roots = [bones[i] for i, p in zip(kept, new_parent) if p < 0]
    if len(roots) > 1:
        raise MasError(f"armature {name}: mapped bones {', '.join(roots)} share no mapped parent; map the bone "
                       f"that carries them all (the hips)")
    pos = {i: k for k, i in enumerate(kept)}
    return kept, tuple(pos[p] if p >= 0 else -1 for p in new_parent)


def _leg_scale(builtin: Armature, bone_map: dict[str, str], H: np.ndarray, T: np.ndarray, mapped: dict) -> float:
    """The factor that makes the armature's legs as long as the built-in rig's (the motion's)."""
    legs = [b for b in builtin.bones if b.endswith(("UpLeg", "Leg", "Upper", "Lower")) and b in bone_map]

    def end(b: str) -> np.ndarray:
        """Where the user's bone for b ends: the head of the next mapped bone down the leg, else its tail."""
        kids = [c for c in builtin.bones if builtin.parents[builtin.index(c)] == builtin.index(b) and c in bone_map]
        return H[mapped[bone_map[kids[0]]]] if kids else T[mapped[bone_map[b]]]

    rig_leg = sum(np.linalg.norm(end(b) - H[mapped[bone_map[b]]]) for b in legs)
    ref_leg = sum(np.linalg.norm(builtin.tails[builtin.index(b)] - builtin.heads[builtin.index(b)]) for b in legs)
    return ref_leg / max(rig_leg, 1e-9)


def _hinges(builtin: Armature, rig: str, bone_map: dict[str, str], H: np.ndarray, mapped: dict) -> dict:
    """Hinge axes of the user's bones: the built-in rig's bend directions, in this armature's facing."""
    pair = ("LeftUpLeg", "RightUpLeg") if rig == "human" else ("LeftBackUpper", "RightBackUpper")
    frame_b = _character_frame({b: builtin.heads[builtin.index(b)] for b in pair}, *pair)
    frame_u = _character_frame({b: H[mapped[bone_map[b]]] for b in pair}, *pair)
    hinges = {}
    for b, axis in builtin.hinges.items():
        u = bone_map.get(b)
        pb = builtin.parents[builtin.index(b)]
        if u is None or builtin.bones[pb] not in bone_map:
            continue
        d_b = builtin.heads[builtin.index(b)] - builtin.heads[pb]
        bend = frame_u @ frame_b.T @ np.cross(axis, d_b / np.linalg.norm(d_b))
        d_u = H[mapped[u]] - H[mapped[bone_map[builtin.bones[pb]]]]
        a = np.cross(d_u / np.linalg.norm(d_u), bend)
        hinges[u] = a / max(np.linalg.norm(a), 1e-9)
    return hinges
