"""The film strip's pieces: which joints leave trails, and the line that says what a motion does."""
import numpy as np
import pytest

from mas_engine.viz import describe, limb_ends, write_filmstrip
from rigs.keypoints import HUMAN16

from conftest import walking_figure


def test_limb_ends_are_the_joints_no_bone_leaves_from():
    assert sorted(HUMAN16.joints[j] for j in limb_ends(HUMAN16)) == sorted(
        ["right_ankle", "left_ankle", "head", "left_wrist", "right_wrist"])


def test_a_walk_is_described_by_its_travel_and_a_still_pose_by_none(tmp_path):
    walk = walking_figure(120, speed=1.2)                  # 4 s at 1.2 m/s
    assert describe(walk, HUMAN16).startswith("travels 4.8 m")
    still = np.repeat(walking_figure(1), 120, axis=0)
    assert describe(still, HUMAN16) == "travels 0.0 m, limbs move up to 0.00 m"
    pytest.importorskip("matplotlib")
    out = write_filmstrip(tmp_path / "strip.png", [walk, still], HUMAN16, frames=3, names=["walk", "still"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
