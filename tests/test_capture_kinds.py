"""The capture data mappings (dog -> horse17, SPL free throws -> coco17_ball) on hand-made poses,
optional joints (the ball) in the 2D set, and COCO -> human16 for the human rig."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SAMPLES

from mas_engine.bvh import read_bvh
from mas_engine.capture import FOOT, dog_to_horse17, read_spl_trial
from mas_engine.dataset import CONFIDENCE_THRESHOLD, MonocularConfig, build_monocular_set
from mas_engine.errors import MasError
from rigs.keypoints import COCO17_BALL, HORSE17, HUMAN16, coco17_to_human16

# a dog hierarchy like the capture's: (name, offset in cm, children); standing, facing +X, Y up, so
# (right-handed) its left is -Z
DOG = ("Hips", (0, 50, 0), [
    ("Spine", (0, 0, 0), [("Spine1", (19, 0, 0), [
        ("Neck", (22, 1, 0), [("Head", (14, 0, 0), [("end", (17, 0, 0), [])])]),
        *[(f"{s}Shoulder", (20, 4, z * 4), [(f"{s}Arm", (8, 0, 0), [(f"{s}ForeArm", (0, -15, 0), [
            (f"{s}Hand", (0, -18, 0), [("end", (0, -7, 0), [])])])])]) for s, z in (("Left", -1), ("Right", 1))]])]),
    *[(f"{s}UpLeg", (-6, -8, z * 5), [(f"{s}Leg", (2, -16, 0), [(f"{s}Foot", (-3, -17, 0), [("end", (0, -9, 0), [])])])])
      for s, z in (("Left", -1), ("Right", 1))],
    ("Tail", (-8, 2, 0), [("Tail1", (-10, 0, 0), [("end", (-10, 0, 0), [])])]),
])


def bvh_text(tree, head_roll_deg=0.0) -> str:
    lines, values = [], []

    def joint(node, depth):
        name, off, kids = node
        pad = "  " * depth
        if name == "end":
            lines.extend([f"{pad}End Site", f"{pad}{{", f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}", f"{pad}}}"])
            return
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}")
        if depth == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
            values.extend([0, 50, 0, 0, 0, 0])
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
            values.extend([0, head_roll_deg if name == "Head" else 0, 0])
        for k in kids:
            joint(k, depth + 1)
        lines.append(f"{pad}}}")
    lines.append("HIERARCHY")
    joint(tree, 0)
    lines += ["MOTION", "Frames: 2", "Frame Time: 0.0166667"] + [" ".join(str(v) for v in values)] * 2
    return "\n".join(lines) + "\n"


def test_dog_mapping_on_a_hand_made_pose(tmp_path):
    # the Head rolled -90 degrees about its length: its local Y turns to the dog's left, Z up,
    # which is how the Head joint is oriented in the capture
    path = tmp_path / "dog.bvh"
    path.write_text(bvh_text(DOG, head_roll_deg=-90.0))
    J, layout = dog_to_horse17(read_bvh(path))
    assert layout is HORSE17 and J.shape == (2, 17, 3)
    at = {n: J[0, HORSE17.index(n)] for n in HORSE17.joints}
    # Z up, metres: BVH (x, y, z) -> (x, -z, y); the dog faces +X, its left is +Y
    hips = np.array([0.0, 0.0, 0.5])                                             # the root position channel: 50 cm
    neck = hips + [0.41, 0.0, 0.01]
    head = neck + [0.14, 0.0, 0.0]
    assert np.allclose(at["neck"], neck) and np.allclose(at["nose"], head + [0.17, 0, 0])
    assert np.allclose(at["left_eye"], head + [0.06, 0.035, 0.04], atol=1e-9)
    assert np.allclose(at["right_eye"], head + [0.06, -0.035, 0.04], atol=1e-9)
    assert np.allclose(at["tail"], hips + [-0.08, 0.0, 0.02])
    shoulder = neck - [0.22, 0, 0.01] + [0.20, 0.04, 0.04] + [0.08, 0, 0]
    assert np.allclose(at["left_front_shoulder"], shoulder)
    assert np.allclose(at["left_front_knee"], shoulder + [0, 0, -0.15])                # the elbow
    assert np.allclose(at["left_front_hoof"], shoulder + [0, 0, -0.40])                # the paw (end site)
    hip = hips + [-0.06, 0.05, -0.08]
    assert np.allclose(at["left_back_hip"], hip) and np.allclose(at["left_back_knee"], hip + [0.02, 0, -0.16])
    assert np.allclose(at["left_back_hoof"], hip + [-0.01, 0, -0.42])


def test_dog_mapping_on_real_capture():
    files = sorted((SAMPLES / "dog").glob("*.bvh")) if (SAMPLES / "dog").is_dir() else []
    if not files:
        pytest.skip("shared data samples not present")
    J, _ = dog_to_horse17(read_bvh(files[0]))
    i = HORSE17.index
    eyes = J[:, i("left_eye")] - J[:, i("right_eye")]
    shoulders = J[:, i("left_front_shoulder")] - J[:, i("right_front_shoulder")]
    assert abs(np.median(eyes[:, 2])) < 0.02                                   # eyes level
    cos = np.sum(eyes * shoulders, -1) / np.linalg.norm(eyes, axis=-1) / np.linalg.norm(shoulders, axis=-1)
    assert np.median(cos) > 0.7                                                # the left eye on the left side
    forward = J[:, i("neck")] - J[:, i("tail")]
    assert np.median(np.cross(forward, shoulders)[:, 2]) > 0                   # and left is left: forward x left = up
    assert np.percentile(J[:, [i(n) for n in HORSE17.joints if "hoof" in n], 2], 2) < 0.05   # paws on the floor


def spl_frame(t_ms, ball):
    player = {}
    for n, spl in {"nose": "NOSE", "left_eye": "L_EYE", "right_eye": "R_EYE", "left_ear": "L_EAR", "right_ear": "R_EAR",
                   "left_shoulder": "L_SHOULDER", "right_shoulder": "R_SHOULDER", "left_elbow": "L_ELBOW",
                   "right_elbow": "R_ELBOW", "left_wrist": "L_WRIST", "right_wrist": "R_WRIST", "left_hip": "L_HIP",
                   "right_hip": "R_HIP", "left_knee": "L_KNEE", "right_knee": "R_KNEE", "left_ankle": "L_ANKLE",
                   "right_ankle": "R_ANKLE"}.items():
        player[spl] = [float(COCO17_BALL.index(n)), 1.0, 2.0]
    player["R_1STTOE"] = [0.0, 0.0, 0.0]                                          # extra keypoints are ignored
    return {"frame": 0, "time": t_ms, "data": {"ball": ball, "player": player}}


def test_spl_mapping_on_hand_made_frames(tmp_path):
    path = tmp_path / "trial.json"
    frames = [spl_frame(33.3 * k, [float("nan")] * 3 if k < 2 else [10.0, 0.0, 5.0]) for k in range(4)]
    path.write_text(json.dumps({"participant_id": "P1", "tracking": frames}))     # json writes NaN as NaN
    J, fps, layout = read_spl_trial(path)
    assert layout is COCO17_BALL and J.shape == (4, 18, 3) and abs(fps - 30.03) < 0.01
    for j, n in enumerate(COCO17_BALL.joints[:17]):
        assert np.allclose(J[:, j], np.array([j, 1.0, 2.0]) * FOOT)             # feet -> metres, by name
    assert np.isnan(J[:2, 17]).all() and np.allclose(J[2:, 17], [10 * FOOT, 0, 5 * FOOT])
    (tmp_path / "bad.json").write_text('{"tracking": [{"time": 0, "data": {}}]}')
    with pytest.raises(MasError, match="bad.json: not an SPL tracking file"):
        read_spl_trial(tmp_path / "bad.json")


def test_a_missing_ball_is_masked_not_learned():
    rng = np.random.default_rng(0)
    F = 90
    t = np.arange(F) / 30.0
    body = np.zeros((F, 18, 3))
    for j in range(17):
        body[:, j] = [0.1 * math.sin(j), 0.1 * math.cos(j), 0.1 + 0.09 * j]
    body[:, 17] = [[0.5 * tt, 0.0, 1.0 + tt] for tt in t]
    body[:40, 17] = np.nan                                                      # the ball unseen for 40 frames
    bad = body.copy()
    bad[10, 3, 0] = np.nan                                                      # a body joint missing: rejected
    cfg = MonocularConfig(min_frames=30, max_frames=60, val_fraction=0.0)
    built = build_monocular_set([("good", body + rng.normal(0, 0.001, body.shape), 30.0), ("bad", bad, 30.0)],
                                COCO17_BALL, cfg)
    assert [r[0] for r in built["rejected"]] == ["bad"]
    pose, length = built["train_pose"], built["train_length"]
    assert np.isfinite(pose).all()
    first = pose[0]                                                             # the window starting at frame 0
    assert (first[:40, 17, 2] == 0).all()                                       # masked where missing
    assert (first[40:length[0], 17, 2] > 0).mean() > 0.5
    assert (first[:length[0], :17, 2] >= CONFIDENCE_THRESHOLD).mean() > 0.8


def test_coco_body_to_human16_on_a_hand_made_pose():
    C = np.zeros((1, 18, 3))
    at = {"left_hip": (0.1, 0, 1.0), "right_hip": (-0.1, 0, 1.0), "left_shoulder": (0.2, 0, 1.5),
          "right_shoulder": (-0.2, 0, 1.5), "left_ear": (0.08, 0, 1.7), "right_ear": (-0.08, 0, 1.7),
          "nose": (0, -0.1, 1.68), "left_wrist": (0.5, 0, 1.5), "ball": (9, 9, 9)}
    for n, p in at.items():
        C[0, COCO17_BALL.index(n)] = p
    H = coco17_to_human16(C, COCO17_BALL)[0]
    assert np.allclose(H[HUMAN16.index("pelvis")], (0, 0, 1.0))
    assert np.allclose(H[HUMAN16.index("neck")], (0, 0, 1.56))
    assert np.allclose(H[HUMAN16.index("head")], (0, 0, 1.82))
    assert np.allclose(H[HUMAN16.index("nose")], at["nose"]) and np.allclose(H[HUMAN16.index("left_wrist")], at["left_wrist"])
