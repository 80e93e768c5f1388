"""From 3D motion capture to a keypoint layout, in Z-up metres.

Only data preparation uses this: the 3D never goes past the monocular 2D data set.

Bandai Namco Research Motiondataset (22-joint BVH, Y-up, centimetres) -> ``human16``:
- hips, knees, ankles, shoulders, elbows, wrists, neck: the BVH joints of the same role
  (UpperLeg, LowerLeg, Foot, UpperArm, LowerArm, Hand, Neck);
- pelvis: the mid-point of the two hip joints (a pose estimator's mid-hip);
- nose and head (top): the BVH has no face joints, so they are placed rigidly in the
  Head joint's frame, whose local X axis points up the head and local Y forward:
  nose = Head + 0.10 m up + 0.10 m forward, head = Head + 0.25 m up.
"""
from __future__ import annotations

import numpy as np

from rigs.keypoints import HUMAN16, KeypointLayout

from .bvh import BvhMotion, world_transforms
from .errors import MasError

# Y-up to Z-up: (x, y, z) -> (x, -z, y), a proper rotation.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

_BANDAI_DIRECT = {
    "right_hip": "UpperLeg_R", "right_knee": "LowerLeg_R", "right_ankle": "Foot_R",
    "left_hip": "UpperLeg_L", "left_knee": "LowerLeg_L", "left_ankle": "Foot_L",
    "neck": "Neck", "left_shoulder": "UpperArm_L", "left_elbow": "LowerArm_L", "left_wrist": "Hand_L",
    "right_shoulder": "UpperArm_R", "right_elbow": "LowerArm_R", "right_wrist": "Hand_R",
}
_NOSE_LOCAL = np.array([0.10, 0.10, 0.0])   # metres in the Head joint's frame (x up, y forward)
_HEAD_TOP_LOCAL = np.array([0.25, 0.0, 0.0])


def bandai_to_human16(motion: BvhMotion) -> tuple[np.ndarray, KeypointLayout]:
    """Joint positions (frames x 16 x 3, metres, Z up) of a Bandai Namco BVH motion."""
    skel = motion.skeleton
    missing = [n for n in list(_BANDAI_DIRECT.values()) + ["Head"] if n not in skel.names]
    if missing:
        raise MasError(f"this BVH does not have the Bandai Namco skeleton (missing joints: {', '.join(missing)})")
    world_rot, pos = world_transforms(skel, motion.values)
    pos = pos * 0.01                    # cm -> m, still Y up
    idx = skel.names.index
    out = np.empty((pos.shape[0], HUMAN16.num_joints, 3))
    for name, bvh_name in _BANDAI_DIRECT.items():
        out[:, HUMAN16.index(name)] = pos[:, idx(bvh_name)]
    out[:, HUMAN16.index("pelvis")] = 0.5 * (pos[:, idx("UpperLeg_L")] + pos[:, idx("UpperLeg_R")])
    head_rot = world_rot[:, idx("Head")]
    head = pos[:, idx("Head")]
    out[:, HUMAN16.index("nose")] = head + head_rot @ _NOSE_LOCAL
    out[:, HUMAN16.index("head")] = head + head_rot @ _HEAD_TOP_LOCAL
    return out @ Y_UP_TO_Z_UP.T, HUMAN16
