"""Armatures: bone trees with a rest pose, and where each keypoint sits on them.

An ``Armature`` is plain data shared by the retargeting (which solves its rotations), the
BVH writer and the Blender add-on (which builds it). Conventions:
- rest pose in world coordinates: metres, Z up, the character facing -Y (Blender's front
  view), its left side towards +X; every bone's rest frame is the world frame, so a pose
  is a local rotation per bone relative to rest (as BVH stores it);
- ``heads``: bones x 3, the rest position of every bone's joint (BVH: its offset chain);
  ``tails``: bones x 3, where each bone points at rest (its child or an end site);
- ``markers``: keypoint name -> (bone name, rest position): the keypoint is a point rigidly
  attached to that bone (usually its head, e.g. the knee; or not, e.g. the nose on the head);
- ``hinges``: bone name -> rest axis of a hinge joint (knees, elbows), oriented as
  (parent bone direction) x (child direction when bent the natural way): the fit uses it to
  orient the limb's plane (the twist keypoints cannot see) and as a prior;
- ``flat``: bones kept level with the floor when no keypoint orients them (feet);
- ``scale``: how much a user's armature was scaled to fit the motion (built-in rigs: 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Armature:
    name: str
    bones: tuple[str, ...]
    parents: tuple[int, ...]
    heads: np.ndarray
    tails: np.ndarray
    layout: str
    markers: dict[str, tuple[str, np.ndarray]]
    hinges: dict[str, np.ndarray] = field(default_factory=dict)
    flat: tuple[str, ...] = ()
    scale: float = 1.0          # rest pose = the armature's own rest x scale (see retarget.armatures.armature_from_skeleton)

    def __post_init__(self):
        n = len(self.bones)
        if len(self.parents) != n or self.heads.shape != (n, 3) or self.tails.shape != (n, 3):
            raise ValueError(f"armature {self.name}: bones, parents, heads and tails disagree in size")
        if self.parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(self.parents[1:], 1)):
            raise ValueError(f"armature {self.name}: bone 0 must be the root and parents come first")
        for kp, (bone, _) in self.markers.items():
            if bone not in self.bones:
                raise ValueError(f"armature {self.name}: marker {kp} is on unknown bone {bone}")
        lengths = np.linalg.norm(self.offsets[1:], axis=-1)
        if (lengths < 1e-6).any():
            bad = [self.bones[i + 1] for i in np.nonzero(lengths < 1e-6)[0]]
            raise ValueError(f"armature {self.name}: zero-length offset for bone(s) {', '.join(bad)}")

    @property
    def offsets(self) -> np.ndarray:
        """Rest offset of every bone's head from its parent's head (the root's: its head)."""
        off = self.heads.copy()
        for b, p in enumerate(self.parents):
            if p >= 0:
                off[b] = self.heads[b] - self.heads[p]
        return off

    def index(self, bone: str) -> int:
        return self.bones.index(bone)

    def children(self, b: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == b]


class _Bones:
    """Collects bones in order (parents first) for the rig builders."""

    def __init__(self):
        self.names, self.parents, self.heads, self.tails = [], [], [], []

    def add(self, name, parent, head, tail):
        self.names.append(name)
        self.parents.append(self.names.index(parent) if parent else -1)
        self.heads.append(np.asarray(head, float))
        self.tails.append(np.asarray(tail, float))

    def arrays(self):
        return tuple(self.names), tuple(self.parents), np.stack(self.heads), np.stack(self.tails)


def _measure(joints: np.ndarray, layout, a: str, b: str) -> float:
    """Median distance between two keypoints over the frames of a motion (frames x J x 3)."""
    return float(np.median(np.linalg.norm(joints[:, layout.index(a)] - joints[:, layout.index(b)], axis=-1)))


HUMAN_PROPORTIONS = {  # metres, an average adult; keys name human16 segments
    "hip_width": 0.09, "thigh": 0.42, "shin": 0.42, "torso": 0.50, "neck_nose": 0.17, "nose_head": 0.15, "neck_head": 0.29,
    "neck_shoulder": 0.18, "upper_arm": 0.28, "forearm": 0.26, "ankle_height": 0.10,
}


def human_proportions(joints: np.ndarray, layout) -> dict:
    """Segment lengths of a human16 motion (medians, left and right averaged)."""
    def both(a, b):
        return 0.5 * (_measure(joints, layout, f"left_{a}", f"left_{b}") + _measure(joints, layout, f"right_{a}", f"right_{b}"))
    return {
        "hip_width": 0.5 * (_measure(joints, layout, "pelvis", "left_hip") + _measure(joints, layout, "pelvis", "right_hip")),
        "thigh": both("hip", "knee"), "shin": both("knee", "ankle"), "torso": _measure(joints, layout, "pelvis", "neck"),
        "neck_nose": _measure(joints, layout, "neck", "nose"), "nose_head": _measure(joints, layout, "nose", "head"),
        "neck_head": _measure(joints, layout, "neck", "head"),
        "neck_shoulder": 0.5 * (_measure(joints, layout, "neck", "left_shoulder") + _measure(joints, layout, "neck", "right_shoulder")),
        "upper_arm": both("shoulder", "elbow"), "forearm": both("elbow", "wrist"), "ankle_height": layout.floor_offset,
    }


def human_armature(p: dict | None = None) -> Armature:
    """The built-in human armature (Mixamo-style bone names), built from segment lengths.

    Bones without a keypoint: Spine and Chest (on the pelvis-neck line at 25% and 60%),
    the clavicles LeftShoulder/RightShoulder (from the chest towards the shoulders), Head
    (its joint 6 cm above the neck; nose and head top are markers on it), and the toes
    (12 cm in front of the ankle, kept level with the floor by the fit).
    """
    p = dict(HUMAN_PROPORTIONS, **(p or {}))
    H = p["thigh"] + p["shin"] + p["ankle_height"]
    neck = np.array([0.0, 0.0, H + p["torso"]])
    sh_dir = np.array([1.0, 0.0, -0.25]) / np.linalg.norm([1.0, 0.0, -0.25])
    # the head triangle (neck, nose, head top) from its three sides: top straight above the neck
    dn, dt, d_nt = p["neck_nose"], p["neck_head"], p["nose_head"]
    nose_z = (dn ** 2 - d_nt ** 2 + dt ** 2) / (2 * dt)
    nose = neck + np.array([0.0, -np.sqrt(max(dn ** 2 - nose_z ** 2, 1e-4)), nose_z])
    head_top = neck + np.array([0.0, 0.0, dt])
    b = _Bones()
    add = b.add
    chest = np.array([0.0, 0.0, H + 0.6 * p["torso"]])
    add("Hips", None, [0, 0, H], [0, 0, H + 0.25 * p["torso"]])
    add("Spine", "Hips", [0, 0, H + 0.25 * p["torso"]], chest)
    add("Chest", "Spine", chest, neck)
    add("Neck", "Chest", neck, neck + [0, 0, 0.06])
    add("Head", "Neck", neck + [0, 0, 0.06], head_top)
    for side, s in (("Left", 1.0), ("Right", -1.0)):
        shoulder = neck + p["neck_shoulder"] * sh_dir * [s, 1, 1]
        elbow = shoulder + [s * p["upper_arm"], 0, 0]
        wrist = elbow + [s * p["forearm"], 0, 0]
        clav = chest + [s * 0.03, 0, 0.7 * (neck[2] - chest[2])]
        add(f"{side}Shoulder", "Chest", clav, shoulder)
        add(f"{side}Arm", f"{side}Shoulder", shoulder, elbow)
        add(f"{side}ForeArm", f"{side}Arm", elbow, wrist)
        add(f"{side}Hand", f"{side}ForeArm", wrist, wrist + [s * 0.08, 0, 0])
    for side, s in (("Left", 1.0), ("Right", -1.0)):
        hip = np.array([s * p["hip_width"], 0, H])
        knee = hip - [0, 0, p["thigh"]]
        ankle = knee - [0, 0, p["shin"]]
        toe = ankle + [0, -0.12, 0.03 - p["ankle_height"]]
        add(f"{side}UpLeg", "Hips", hip, knee)
        add(f"{side}Leg", f"{side}UpLeg", knee, ankle)
        add(f"{side}Foot", f"{side}Leg", ankle, toe)
        add(f"{side}ToeBase", f"{side}Foot", toe, toe + [0, -0.06, 0])
    bones, parents, heads, tails = b.arrays()
    idx = bones.index
    markers = {"pelvis": ("Hips", heads[idx("Hips")]), "neck": ("Neck", heads[idx("Neck")]),
               "nose": ("Head", nose), "head": ("Head", head_top)}
    for side in ("left", "right"):
        S = side.capitalize()
        for kp, bone in (("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"), ("shoulder", "Arm"),
                         ("elbow", "ForeArm"), ("wrist", "Hand")):
            markers[f"{side}_{kp}"] = (S + bone, heads[idx(S + bone)])
    # hinge axes point along (parent bone direction) x (bent child direction), as the fit's plane rule uses them
    hinges = {"LeftLeg": np.array([1.0, 0, 0]), "RightLeg": np.array([1.0, 0, 0]),
              "LeftForeArm": np.array([0, 0, -1.0]), "RightForeArm": np.array([0, 0, 1.0])}
    return Armature("human", bones, parents, heads, tails, "human16", markers, hinges,
                    flat=("LeftFoot", "RightFoot"))


HORSE_PROPORTIONS = {  # metres, a horse
    "hip_width": 0.45, "shoulder_width": 0.4, "tail_hip": 0.3, "neck_shoulder": 0.45, "tail_neck": 1.6,
    "back_thigh": 0.55, "back_shin": 0.75, "front_upper": 0.6, "front_lower": 0.75, "neck_nose": 0.9,
    "eye_width": 0.22, "nose_eye": 0.3, "hoof_height": 0.03,
}


def horse_proportions(joints: np.ndarray, layout) -> dict:
    """Segment lengths of a horse17 motion (medians, left and right averaged)."""
    def both(a, b):
        return 0.5 * (_measure(joints, layout, f"left_{a}", f"left_{b}") + _measure(joints, layout, f"right_{a}", f"right_{b}"))
    return {
        "hip_width": _measure(joints, layout, "left_back_hip", "right_back_hip"),
        "shoulder_width": _measure(joints, layout, "left_front_shoulder", "right_front_shoulder"),
        "tail_hip": 0.5 * (_measure(joints, layout, "tail", "left_back_hip") + _measure(joints, layout, "tail", "right_back_hip")),
        "neck_shoulder": 0.5 * (_measure(joints, layout, "neck", "left_front_shoulder") + _measure(joints, layout, "neck", "right_front_shoulder")),
        "tail_neck": _measure(joints, layout, "tail", "neck"),
        "back_thigh": both("back_hip", "back_knee"), "back_shin": both("back_knee", "back_hoof"),
        "front_upper": both("front_shoulder", "front_knee"), "front_lower": both("front_knee", "front_hoof"),
        "neck_nose": _measure(joints, layout, "neck", "nose"), "eye_width": _measure(joints, layout, "left_eye", "right_eye"),
        "nose_eye": 0.5 * (_measure(joints, layout, "nose", "left_eye") + _measure(joints, layout, "nose", "right_eye")),
        "hoof_height": layout.floor_offset,
        "canonical": canonical_pose(joints, layout, "neck", "tail"),
    }


def canonical_pose(joints: np.ndarray, layout, front: str, back: str) -> dict:
    """Where each keypoint typically is in the subject's own frame, in the rigs' rest frame
    (facing -Y, left +X, Z up, ``back`` at X = Y = 0): per frame, forward is back -> front
    (horizontal); the median over frames; left/right pairs made mirror images."""
    i = layout.index
    f = joints[:, i(front), :2] - joints[:, i(back), :2]
    f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-9)
    left = np.stack([-f[:, 1], f[:, 0]], -1)
    d = joints[..., :2] - joints[:, i(back), None, :2]
    rest = np.stack([np.einsum("fjk,fk->fj", d, left), -np.einsum("fjk,fk->fj", d, f), joints[..., 2]], -1)
    c = np.median(rest, axis=0)
    for a, b in layout.pairs:
        x = 0.5 * (c[a, 0] - c[b, 0])
        yz = 0.5 * (c[a, 1:] + c[b, 1:])
        c[a], c[b] = np.r_[x, yz], np.r_[-x, yz]
        if "left" in layout.joints[b]:
            c[a, 0], c[b, 0] = -c[a, 0], -c[b, 0]
    return {n: c[j] for j, n in enumerate(layout.joints)}


def horse_armature(p: dict | None = None) -> Armature:
    """The built-in horse armature, built from segment lengths (facing -Y, Z up); with
    ``p["canonical"]`` (``horse_proportions`` of a motion) from that motion's typical pose.

    Root ``Pelvis`` at the tail root; ``Spine`` and ``Chest`` (no keypoints) carry the
    shoulders and ``Neck`` (at the neck keypoint); ``Head`` (no keypoint at its joint, a
    third of the way to the nose) carries the eyes and the nose. Each leg: upper bone (hip or
    shoulder), lower bone (knee), and a hoof bone kept level with the floor.
    """
    p = dict(HORSE_PROPORTIONS, **(p or {}))
    if "canonical" in p:
        return _horse_from_pose(p)
    hw, sw = p["hip_width"] / 2, p["shoulder_width"] / 2
    back_h = p["hoof_height"] + p["back_shin"] + p["back_thigh"]
    front_h = p["hoof_height"] + p["front_lower"] + p["front_upper"]
    up = np.sqrt(max(p["tail_hip"] ** 2 - hw ** 2, 1e-4) / 2)
    tail = np.array([0.0, up, back_h + up])          # behind and above the hips
    e = np.sqrt(max(p["neck_shoulder"] ** 2 - sw ** 2, 1e-4) / 2)
    dz = (front_h + e) - tail[2]
    neck = np.array([0.0, tail[1] - np.sqrt(max(p["tail_neck"] ** 2 - dz ** 2, 1e-4)), front_h + e])
    shoulder_y = neck[1] + e
    nose = neck + p["neck_nose"] * np.array([0.0, -0.8, 0.6])
    b = _Bones()
    add = b.add
    chest = np.array([0.0, shoulder_y + 0.1, front_h])
    spine = 0.5 * (tail + chest)
    head_joint = neck + (nose - neck) / 3
    add("Pelvis", None, tail, spine)
    add("Spine", "Pelvis", spine, chest)
    add("Chest", "Spine", chest, neck)
    add("Neck", "Chest", neck, head_joint)
    add("Head", "Neck", head_joint, nose)
    for end, y, top, upper, lower, parent in (("Front", shoulder_y, front_h, p["front_upper"], p["front_lower"], "Chest"),
                                              ("Back", tail[1] - up, back_h, p["back_thigh"], p["back_shin"], "Pelvis")):
        for side, s in (("Left", 1.0), ("Right", -1.0)):
            x = s * (sw if end == "Front" else hw)
            hip = np.array([x, y, top])
            knee = hip - [0, 0, upper]
            hoof = knee - [0, 0, lower]
            add(f"{side}{end}Upper", parent, hip, knee)
            add(f"{side}{end}Lower", f"{side}{end}Upper", knee, hoof)
            add(f"{side}{end}Hoof", f"{side}{end}Lower", hoof, hoof + [0, -0.12, 0])
    eye_mid = neck + 2 * (nose - neck) / 3 + [0, 0, 0.05]
    side_off = np.array([p["eye_width"] / 2, 0.0, 0.0])
    return _horse_markers(b, tail, neck, nose, eye_mid + side_off, eye_mid - side_off)


def _horse_from_pose(p: dict) -> Armature:
    """The horse armature with the motion's own typical pose (``canonical_pose``): tail, neck,
    nose, eyes, shoulders and hips where the subject carries them; legs straight down at rest."""
    c = p["canonical"]
    tail, neck, nose = c["tail"], c["neck"], c["nose"]
    shoulders = 0.5 * (c["left_front_shoulder"] + c["right_front_shoulder"])
    chest = np.array([0.0, shoulders[1], shoulders[2]])
    if np.linalg.norm(chest - neck) < 0.02:          # shoulders at the neck: keep a chest bone
        chest = chest + [0.0, 0.03, 0.0]
    spine = 0.5 * (tail + chest)
    head_joint = neck + 0.45 * (nose - neck)
    b = _Bones()
    add = b.add
    add("Pelvis", None, tail, spine)
    add("Spine", "Pelvis", spine, chest)
    add("Chest", "Spine", chest, neck)
    add("Neck", "Chest", neck, head_joint)
    add("Head", "Neck", head_joint, nose)
    for end, top, upper, lower, parent in (("Front", "front_shoulder", p["front_upper"], p["front_lower"], "Chest"),
                                           ("Back", "back_hip", p["back_thigh"], p["back_shin"], "Pelvis")):
        for side in ("Left", "Right"):
            hip = c[f"{side.lower()}_{top}"]
            knee = hip - [0, 0, upper]
            hoof = knee - [0, 0, lower]
            add(f"{side}{end}Upper", parent, hip, knee)
            add(f"{side}{end}Lower", f"{side}{end}Upper", knee, hoof)
            add(f"{side}{end}Hoof", f"{side}{end}Lower", hoof, hoof + [0, -0.3 * lower, 0])
    return _horse_markers(b, tail, neck, nose, c["left_eye"], c["right_eye"])


def _horse_markers(b: "_Bones", tail, neck, nose, left_eye, right_eye) -> Armature:
    bones, parents, heads, tails = b.arrays()
    idx = bones.index
    markers = {"tail": ("Pelvis", tail), "neck": ("Neck", neck), "nose": ("Head", nose),
               "left_eye": ("Head", left_eye), "right_eye": ("Head", right_eye)}
    for side in ("left", "right"):
        S = side.capitalize()
        for kp, bone in (("front_shoulder", "FrontUpper"), ("front_knee", "FrontLower"), ("front_hoof", "FrontHoof"),
                         ("back_hip", "BackUpper"), ("back_knee", "BackLower"), ("back_hoof", "BackHoof")):
            markers[f"{side}_{kp}"] = (S + bone, heads[idx(S + bone)])
    hinges = {}
    for side in ("Left", "Right"):
        # the horse17 knees are the anatomical elbow and stifle (APT-36K): the elbow folds the
        # lower leg forwards, the stifle backwards
        hinges[f"{side}FrontLower"] = np.array([-1.0, 0, 0])
        hinges[f"{side}BackLower"] = np.array([1.0, 0, 0])
    return Armature("horse", bones, parents, heads, tails, "horse17", markers, hinges,
                    flat=("LeftFrontHoof", "RightFrontHoof", "LeftBackHoof", "RightBackHoof"))
