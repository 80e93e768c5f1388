"""Bone maps: which bone of someone else's armature plays each bone of a built-in rig.

A bone map is plain data, ``{built-in bone: user bone}``, shared by the retargeting
(``retarget.armatures.armature_from_skeleton``) and the add-on (which shows, edits and saves it).
Presets list alternative names per bone (the first one the armature has wins); names match
without case and without a namespace prefix (``mixamorig:Hips`` matches ``Hips``).
Built-in bones a map leaves out are not driven; the user bones they would be stay at rest.
"""
from __future__ import annotations

import json
from pathlib import Path

from rigs.armature import horse_armature, human_armature

HUMAN_BONES = human_armature().bones
HORSE_BONES = horse_armature().bones

# the bones a human map must have: they carry the keypoints that fix the pose
HUMAN_REQUIRED = ("Hips", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot",
                  "LeftArm", "LeftForeArm", "LeftHand", "RightArm", "RightForeArm", "RightHand")
HORSE_REQUIRED = tuple(b for b in HORSE_BONES if b.endswith(("Upper", "Lower"))) + ("Pelvis", "Neck")


def _sided(left: dict[str, list[str]]) -> dict[str, list[str]]:
    """Complete a map given for the left side with the right side (names with L/l/left swapped)."""
    out = dict(left)
    swaps = ((".L", ".R"), ("_l", "_r"), ("left_", "right_"), ("L_", "R_"), ("Left", "Right"))
    for bone, names in left.items():
        if bone.startswith("Left"):
            right = []
            for n in names:
                for a, b in swaps:
                    if a in n:
                        n = n.replace(a, b)
                        break
                right.append(n)
            out["Right" + bone[4:]] = right
    return out


PRESETS: dict[str, dict[str, dict[str, list[str]]]] = {
    "human": {
        "builtin": {b: [b] for b in HUMAN_BONES},
        "mixamo": _sided({
            "Hips": ["Hips"], "Spine": ["Spine"], "Chest": ["Spine2", "Spine1"], "Neck": ["Neck"], "Head": ["Head"],
            "LeftShoulder": ["LeftShoulder"], "LeftArm": ["LeftArm"], "LeftForeArm": ["LeftForeArm"],
            "LeftHand": ["LeftHand"], "LeftUpLeg": ["LeftUpLeg"], "LeftLeg": ["LeftLeg"], "LeftFoot": ["LeftFoot"],
            "LeftToeBase": ["LeftToeBase"]}),
        # the Rigify metarig (its generated control rig drives DEF bones by constraints: keys on them do nothing)
        "rigify": _sided({
            "Hips": ["spine"], "Spine": ["spine.001"], "Chest": ["spine.003", "spine.002"], "Neck": ["spine.004"],
            "Head": ["spine.006", "spine.005"], "LeftShoulder": ["shoulder.L"], "LeftArm": ["upper_arm.L"],
            "LeftForeArm": ["forearm.L"], "LeftHand": ["hand.L"], "LeftUpLeg": ["thigh.L"], "LeftLeg": ["shin.L"],
            "LeftFoot": ["foot.L"], "LeftToeBase": ["toe.L"]}),
        # SMPL / SMPL-X as the official Blender add-ons name them (and the older capitalised names)
        "smpl": _sided({
            "Hips": ["pelvis", "Pelvis"], "Spine": ["spine1", "Spine1"], "Chest": ["spine3", "Spine3"],
            "Neck": ["neck", "Neck"], "Head": ["head", "Head"], "LeftShoulder": ["left_collar", "L_Collar"],
            "LeftArm": ["left_shoulder", "L_Shoulder"], "LeftForeArm": ["left_elbow", "L_Elbow"],
            "LeftHand": ["left_wrist", "L_Wrist"], "LeftUpLeg": ["left_hip", "L_Hip"],
            "LeftLeg": ["left_knee", "L_Knee"], "LeftFoot": ["left_ankle", "L_Ankle"],
            "LeftToeBase": ["left_foot", "L_Foot"]}),
        # Unreal Engine mannequin (UE4 and UE5 Manny/Quinn)
        "unreal": _sided({
            "Hips": ["pelvis"], "Spine": ["spine_01"], "Chest": ["spine_05", "spine_03"], "Neck": ["neck_01"],
            "Head": ["head"], "LeftShoulder": ["clavicle_l"], "LeftArm": ["upperarm_l"],
            "LeftForeArm": ["lowerarm_l"], "LeftHand": ["hand_l"], "LeftUpLeg": ["thigh_l"], "LeftLeg": ["calf_l"],
            "LeftFoot": ["foot_l"], "LeftToeBase": ["ball_l"]}),
    },
    "horse": {"builtin": {b: [b] for b in HORSE_BONES}},
}


def bare(name: str) -> str:
    """A bone name without namespace and case: 'mixamorig:LeftArm' -> 'leftarm'."""
    return name.split(":")[-1].lower()


def resolve_preset(preset: dict[str, list[str]], bone_names) -> dict[str, str]:
    """{built-in bone: user bone} for the bones of ``bone_names`` that a preset names."""
    have = {}
    for n in bone_names:
        have.setdefault(bare(n), n)
    out = {}
    for bone, names in preset.items():
        for n in names:
            if bare(n) in have:
                out[bone] = have[bare(n)]
                break
    return out


def detect_preset(rig: str, bone_names) -> tuple[str, dict[str, str]]:
    """The preset of ``rig`` ("human" or "horse") that maps the most of these bones."""
    scored = [(len(resolve_preset(p, bone_names)), name) for name, p in PRESETS[rig].items()]
    n, name = max(scored)
    return name, resolve_preset(PRESETS[rig][name], bone_names)


def bones_of(rig: str) -> list[str]:
    """The bones of a built-in rig ("human" or "horse"), in order."""
    return list(HUMAN_BONES if rig == "human" else HORSE_BONES)


def missing_bones(rig: str, bone_map: dict[str, str]) -> list[str]:
    """Required built-in bones the map leaves out."""
    required = HUMAN_REQUIRED if rig == "human" else HORSE_REQUIRED
    return [b for b in required if not bone_map.get(b)]


def save_bone_map(path, rig: str, bone_map: dict[str, str]) -> Path:
    """Write a map as JSON ({"rig": ..., "bones": {built-in: user}}), atomically."""
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # unique, exclusive
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"rig": rig, "bones": bone_map}, indent=2))
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def load_bone_map(path) -> tuple[str, dict[str, str]]:
    """Read a map written by ``save_bone_map``; raises ValueError naming what is wrong."""
    try:
        d = json.loads(Path(path).read_text())
        rig, bones = d["rig"], d["bones"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a bone map file ({e}); it needs {{\"rig\": ..., \"bones\": {{...}}}}") from None
    known = HUMAN_BONES if rig == "human" else HORSE_BONES if rig == "horse" else None
    if known is None:
        raise ValueError(f"{path}: unknown rig {rig!r} (human or horse)")
    bad = [b for b in bones if b not in known]
    if bad:
        raise ValueError(f"{path}: not bones of the built-in {rig} rig: {', '.join(bad)}")
    return rig, {str(k): str(v) for k, v in bones.items() if v}
