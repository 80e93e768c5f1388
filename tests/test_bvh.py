import numpy as np
import pytest

from mas_engine.bvh import parse_bvh, read_bvh
from mas_engine.capture import bandai_to_human16
from mas_engine.errors import MasError
from rigs.keypoints import HUMAN16
from conftest import SAMPLES

SMALL = """HIERARCHY
ROOT hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    JOINT hand
    {
      OFFSET 0 2 0
      CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation
      End Site
      {
        OFFSET 0 0 3
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.04
0 0 0  0 0 0   0 0 0   0 2 0  0 0 0
10 20 30  90 0 0   90 0 0   0 5 0  90 0 0
"""


def test_joint_positions_match_hand_computed_positions():
    m = parse_bvh(SMALL)
    assert m.skeleton.names == ["hips", "arm", "hand", "hand_end"]
    assert m.skeleton.parents == [-1, 0, 1, 2]
    assert m.fps == pytest.approx(25.0)
    P = m.positions()
    # frame 0: no rotation; hand's position channels (0, 2, 0) replace its offset (0, 2, 0)
    np.testing.assert_allclose(P[0], [[0, 0, 0], [1, 0, 0], [1, 2, 0], [1, 2, 3]], atol=1e-12)
    # frame 1: root at (10, 20, 30) turned 90 deg about Z: x -> y, y -> -x.
    # arm turned 90 deg about X (its local y -> z, z -> -y); hand translated (0, 5, 0), turned 90 deg about Y.
    root = np.array([10, 20, 30.0])
    arm = root + [0, 1, 0]                  # Rz90 (1, 0, 0)
    hand = arm + [0, 0, 5]                  # Rz90 Rx90 (0, 5, 0) = Rz90 (0, 0, 5)
    end = hand + [0, 3, 0]                  # Rz90 Rx90 Ry90 (0, 0, 3) = Rz90 Rx90 (3, 0, 0) = (0, 3, 0)
    np.testing.assert_allclose(P[1], [root, arm, hand, end], atol=1e-9)


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_every_channel_order_is_applied_in_listed_order(order):
    angles = {"X": 30.0, "Y": -50.0, "Z": 70.0}
    text = ("HIERARCHY\nROOT r\n{\n OFFSET 0 0 0\n CHANNELS 3 " + " ".join(f"{a}rotation" for a in order)
            + "\n End Site\n {\n  OFFSET 0.3 -0.5 0.8\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n"
            + " ".join(str(angles[a]) for a in order) + "\n")
    P = parse_bvh(text).positions()

    def rot(axis, deg):
        a = np.deg2rad(deg)
        c, s = np.cos(a), np.sin(a)
        return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
                "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
                "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]
    R = rot(order[0], angles[order[0]]) @ rot(order[1], angles[order[1]]) @ rot(order[2], angles[order[2]])
    np.testing.assert_allclose(P[0, 1], R @ [0.3, -0.5, 0.8], atol=1e-12)


def test_truncated_or_broken_bvh_gives_a_clear_error(tmp_path):
    bad = tmp_path / "cut.bvh"
    bad.write_text(SMALL[:-20])
    with pytest.raises(MasError, match="cut.bvh is not a valid BVH file"):
        read_bvh(bad)
    with pytest.raises(MasError, match="cannot read BVH file"):
        read_bvh(tmp_path / "missing.bvh")
    (tmp_path / "x.bvh").write_text("hello")
    with pytest.raises(MasError, match="no MOTION section"):
        read_bvh(tmp_path / "x.bvh")


@pytest.mark.skipif(not (SAMPLES / "bandai").is_dir(), reason="shared data samples not present")
def test_bandai_capture_maps_to_human16_in_z_up_metres():
    motion = read_bvh(SAMPLES / "bandai" / "dataset-1_walk_normal_001.bvh")
    joints, layout = bandai_to_human16(motion)
    assert layout is HUMAN16 and joints.shape == (motion.values.shape[0], 16, 3)
    j = HUMAN16.index
    # Z is up: the head is above the pelvis, the pelvis above the ankles
    assert (joints[:, j("head"), 2] > joints[:, j("pelvis"), 2] + 0.5).all()
    assert (joints[:, j("pelvis"), 2] > joints[:, j("left_ankle"), 2] + 0.6).all()
    height = joints[:, j("head"), 2].mean() - joints[:, [j("left_ankle"), j("right_ankle")], 2].min() + 0.1
    assert 1.4 < height < 2.0
    # limbs and the head are rigid in the capture: those distances keep their length
    # (neck-nose or neck-shoulder are not: the head nods and the clavicles move)
    rigid = [("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("left_hip", "left_knee"),
             ("left_knee", "left_ankle"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
             ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("pelvis", "left_hip"),
             ("nose", "head")]
    for a, b in rigid:
        length = np.linalg.norm(joints[:, j(a)] - joints[:, j(b)], axis=-1)
        assert length.std() < 1e-3 * length.mean(), (a, b)
    # the subject walks: the pelvis travels more than 2 m
    assert np.linalg.norm(joints[-1, 0, :2] - joints[0, 0, :2]) > 2.0
    # nose in front of the head: the mean facing direction agrees with the walking direction
    face = (joints[:, j("nose"), :2] - joints[:, j("neck"), :2]).mean(0)
    walk = joints[-1, 0, :2] - joints[0, 0, :2]
    assert face @ walk > 0
