"""Bone maps (rigs.bonemaps), users' armatures (retarget.armatures.armature_from_skeleton), resampling."""
from __future__ import annotations

import numpy as np
import pytest

from mas_engine.errors import MasError
from mas_engine.motion_io import resample
from retarget.armatures import armature_from_skeleton
from retarget.retarget import retarget
from rigs.armature import human_armature
from rigs.bonemaps import (HUMAN_BONES, PRESETS, detect_preset, load_bone_map, missing_bones, resolve_preset,
                           save_bone_map)
from rigs.keypoints import HUMAN16
from test_retarget import motion_dict, posed_rig

UNREAL = ["root", "pelvis", "spine_01", "spine_02", "spine_03", "spine_04", "spine_05", "neck_01", "head",
          "clavicle_l", "upperarm_l", "upperarm_twist_01_l", "lowerarm_l", "hand_l", "clavicle_r", "upperarm_r",
          "lowerarm_r", "hand_r", "thigh_l", "calf_l", "foot_l", "ball_l", "thigh_r", "calf_r", "foot_r", "ball_r"]
RIGIFY = ["spine", "spine.001", "spine.002", "spine.003", "spine.004", "spine.005", "spine.006", "shoulder.L",
          "upper_arm.L", "forearm.L", "hand.L", "shoulder.R", "upper_arm.R", "forearm.R", "hand.R", "thigh.L",
          "shin.L", "foot.L", "toe.L", "thigh.R", "shin.R", "foot.R", "toe.R"]
SMPL = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
        "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"]
SMPL_OLD = ["m_avg_" + n for n in ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
                                   "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
                                   "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist")]


@pytest.mark.parametrize("names,preset", [(["mixamorig:" + b for b in ("Hips", "Spine", "Spine1", "Spine2", "Neck", "Head",
                                                                      "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
                                                                      "RightShoulder", "RightArm", "RightForeArm", "RightHand",
                                                                      "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase",
                                                                      "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase")], "mixamo"),
                                          (UNREAL, "unreal"), (RIGIFY, "rigify"), (SMPL, "smpl"), (list(HUMAN_BONES), "builtin")])
def test_presets_map_every_bone_of_their_rig(names, preset):
    found, m = detect_preset("human", names)
    assert found == preset
    assert set(m) == set(HUMAN_BONES) and not missing_bones("human", m)
    assert len(set(m.values())) == len(m)                     # no user bone plays two parts


def test_names_match_without_case_or_namespace():
    m = resolve_preset(PRESETS["human"]["smpl"], [n.replace("m_avg_", "SMPL:") for n in SMPL_OLD])
    assert m["LeftArm"] == "SMPL:L_Shoulder" and m["RightToeBase"] == "SMPL:R_Foot"
    assert resolve_preset(PRESETS["human"]["mixamo"], ["HIPS"]) == {"Hips": "HIPS"}


def test_bone_map_file_round_trip_and_errors(tmp_path):
    path = save_bone_map(tmp_path / "m.json", "human", {"Hips": "pelvis", "LeftArm": "upperarm_l"})
    assert load_bone_map(path) == ("human", {"Hips": "pelvis", "LeftArm": "upperarm_l"})
    (tmp_path / "bad.json").write_text('{"rig": "human", "bones": {"Tail": "tail_01"}}')
    with pytest.raises(ValueError, match="not bones of the built-in human rig: Tail"):
        load_bone_map(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not a bone map file"):
        load_bone_map(tmp_path / "junk.json")


def unreal_skeleton(scale=1.0):
    """An Unreal-style skeleton built from the built-in rig: a root bone at the origin, five spine
    bones and a twist bone that no map drives (rest in metres, Z up, times ``scale``)."""
    arm = human_armature()
    h = {b: arm.heads[i] for i, b in enumerate(arm.bones)}
    t = {b: arm.tails[i] for i, b in enumerate(arm.bones)}
    bones, parents, heads, tails = [], [], [], []

    def add(name, parent, head, tail):
        bones.append(name)
        parents.append(bones.index(parent) if parent else -1)
        heads.append(np.asarray(head, float))
        tails.append(np.asarray(tail, float))
    add("root", None, [0, 0, 0], [0, 0.2, 0])
    add("pelvis", "root", h["Hips"], t["Hips"])
    spine = np.linspace(h["Spine"], h["Neck"], 6)
    for k in range(5):
        add(f"spine_0{k + 1}", "pelvis" if k == 0 else f"spine_0{k}", spine[k], spine[k + 1])
    add("neck_01", "spine_05", h["Neck"], t["Neck"])
    add("head", "neck_01", h["Head"], t["Head"])
    for side, s in (("Left", "l"), ("Right", "r")):
        add(f"clavicle_{s}", "spine_05", h[side + "Shoulder"], t[side + "Shoulder"])
        add(f"upperarm_{s}", f"clavicle_{s}", h[side + "Arm"], t[side + "Arm"])
        add(f"upperarm_twist_01_{s}", f"upperarm_{s}", (h[side + "Arm"] + t[side + "Arm"]) / 2, t[side + "Arm"])
        add(f"lowerarm_{s}", f"upperarm_{s}", h[side + "ForeArm"], t[side + "ForeArm"])
        add(f"hand_{s}", f"lowerarm_{s}", h[side + "Hand"], t[side + "Hand"])
        add(f"thigh_{s}", "pelvis", h[side + "UpLeg"], t[side + "UpLeg"])
        add(f"calf_{s}", f"thigh_{s}", h[side + "Leg"], t[side + "Leg"])
        add(f"foot_{s}", f"calf_{s}", h[side + "Foot"], t[side + "Foot"])
        add(f"ball_{s}", f"foot_{s}", h[side + "ToeBase"], t[side + "ToeBase"])
    return bones, parents, np.array(heads) * scale, np.array(tails) * scale


def test_fit_onto_an_unreal_skeleton():
    truth, joints = posed_rig(seed=4)
    bones, parents, heads, tails = unreal_skeleton(scale=1.3)
    _, bmap = detect_preset("human", bones)
    arm = armature_from_skeleton("manny", bones, parents, heads, tails, bmap, joints, HUMAN16)
    assert arm.bones[0] == "pelvis" and "root" not in arm.bones and "upperarm_twist_01_l" not in arm.bones
    assert arm.parents[arm.index("spine_05")] == arm.index("spine_01")      # through the unmapped spine_02..04
    assert abs(arm.scale - 1 / 1.3) < 0.02                                   # scaled to the motion's legs
    track, report = retarget(motion_dict(joints), rig=arm, foot_lock=False)
    assert report["marker_error_m"] < 0.02


def test_armature_from_skeleton_refuses_bad_maps():
    truth, joints = posed_rig(frames=5)
    bones, parents, heads, tails = unreal_skeleton()
    _, bmap = detect_preset("human", bones)
    partial = {k: v for k, v in bmap.items() if k not in ("LeftLeg", "RightHand")}
    with pytest.raises(MasError, match="no bone for LeftLeg, RightHand"):
        armature_from_skeleton("x", bones, parents, heads, tails, partial, joints, HUMAN16)
    with pytest.raises(MasError, match="has no bone"):
        armature_from_skeleton("x", bones, parents, heads, tails, dict(bmap, Hips="hips_typo"), joints, HUMAN16)
    # legs that hang from the unmapped root bone, not from the pelvis: the map has two roots
    cut = list(parents)
    for leg in ("thigh_l", "thigh_r"):
        cut[bones.index(leg)] = 0
    with pytest.raises(MasError, match="share no mapped parent"):
        armature_from_skeleton("x", bones, cut, heads, tails, bmap, joints, HUMAN16)


def test_resample_keeps_duration_and_end_frames():
    x = np.cumsum(np.random.default_rng(0).normal(size=(61, 16, 3)), 0).astype(np.float32)
    y = resample(x, 30.0, 24.0)
    assert y.shape == (49, 16, 3) and y.dtype == np.float32
    assert np.allclose(y[0], x[0]) and np.allclose(y[-1], x[-1])
    assert np.allclose(resample(x, 30.0, 60.0)[::2], x, atol=1e-5)           # 60 fps hits every 30 fps frame
    assert np.allclose(resample(x, 30.0, 30.0), x)
    with pytest.raises(MasError, match="positive"):
        resample(x, 30.0, 0.0)
