"""From 3D motion capture to a keypoint layout, in Z-up metres.

Only data preparation uses this: the 3D never goes past the monocular 2D data set.

Bandai Namco Research Motiondataset (22-joint BVH, Y-up, centimetres) -> ``human16``:
- hips, knees, ankles, shoulders, elbows, wrists, neck: the BVH joints of the same role
  (UpperLeg, LowerLeg, Foot, UpperArm, LowerArm, Hand, Neck);
- pelvis: the mid-point of the two hip joints (a pose estimator's mid-hip);
- nose and head (top): the BVH has no face joints, so they are placed rigidly in the
  Head joint's frame, whose local X axis points up the head and local Y forward:
  nose = Head + 0.10 m up + 0.10 m forward, head = Head + 0.25 m up.

Dog capture of Zhang et al. 2018 (21-joint BVH, Y-up, centimetres, 60 fps) -> ``horse17``
(APT-36K-style quadruped keypoints; the anatomical joints of the same role):
- neck: Neck; tail: Tail (the tail root);
- front legs: shoulder = Arm (the shoulder joint), knee = ForeArm (the elbow, as APT-36K's
  front "elbow"), hoof = the end site below Hand (the paw on the ground);
- back legs: hip = UpLeg, knee = Leg (the stifle), hoof = the end site below Foot (the paw);
- nose and eyes: the BVH has no face joints; they are placed rigidly in the Head joint's frame,
  whose local X axis runs along the head to the snout, Y to the dog's left and Z up (measured
  over the clips: world up is within 20 degrees of the Head's +Z, the left shoulder's side its
  +Y): nose = the Head's end site (17 cm along X: the tip of the snout); eyes = Head + 6 cm
  along X, 4 cm up, 3.5 cm to each side.

SPL Open Data basketball free throws (JSON, 3D keypoints in feet, Z up, ~30 fps) ->
``coco17_ball``: the COCO-named player keypoints as they are (R_EYE -> right_eye, ...) and the
ball, NaN where the capture did not see it (the layout's optional joint: masked in training).
"""
from __future__ import annotations

import numpy as np

from rigs.keypoints import HUMAN16, KeypointLayout

from .bvh import Y_UP_TO_Z_UP, BvhMotion, world_transforms
from .errors import MasError


_BANDAI_DIRECT = {
    "right_hip": "UpperLeg_R", "right_knee": "LowerLeg_R", "right_ankle": "Foot_R",
    "left_hip": "UpperLeg_L", "left_knee": "LowerLeg_L", "left_ankle": "Foot_L",
    "neck": "Neck", "left_shoulder": "UpperArm_L", "left_elbow": "LowerArm_L", "left_wrist": "Hand_L",
    "right_shoulder": "UpperArm_R", "right_elbow": "LowerArm_R", "right_wrist": "Hand_R",
}
_NOSE_LOCAL = np.array([0.10, 0.10, 0.0])   # metres in the Head joint's frame (x up, y forward)
_HEAD_TOP_LOCAL = np.array([0.25, 0.0, 0.0])


def _direct(motion: BvhMotion, direct: dict[str, str], layout: KeypointLayout, skeleton: str):
    """The BVH joints a mapping copies, in metres (still Y up): (keypoints frames x J x 3 with the
    direct ones filled, world rotations, positions, joint index)."""
    skel = motion.skeleton
    missing = [n for n in list(direct.values()) + ["Head"] if n not in skel.names]
    if missing:
        raise MasError(f"this BVH does not have the {skeleton} skeleton (missing joints: {', '.join(missing)})")
    world_rot, pos = world_transforms(skel, motion.values)
    pos = pos * 0.01                    # cm -> m, still Y up
    idx = skel.names.index
    out = np.empty((pos.shape[0], layout.num_joints, 3))
    for name, bvh_name in direct.items():
        out[:, layout.index(name)] = pos[:, idx(bvh_name)]
    return out, world_rot, pos, idx


def bandai_to_human16(motion: BvhMotion) -> tuple[np.ndarray, KeypointLayout]:
    """Joint positions (frames x 16 x 3, metres, Z up) of a Bandai Namco BVH motion."""
    out, world_rot, pos, idx = _direct(motion, _BANDAI_DIRECT, HUMAN16, "Bandai Namco")
    out[:, HUMAN16.index("pelvis")] = 0.5 * (pos[:, idx("UpperLeg_L")] + pos[:, idx("UpperLeg_R")])
    head_rot = world_rot[:, idx("Head")]
    head = pos[:, idx("Head")]
    out[:, HUMAN16.index("nose")] = head + head_rot @ _NOSE_LOCAL
    out[:, HUMAN16.index("head")] = head + head_rot @ _HEAD_TOP_LOCAL
    return out @ Y_UP_TO_Z_UP.T, HUMAN16


_DOG_DIRECT = {
    "neck": "Neck", "tail": "Tail",
    "left_front_shoulder": "LeftArm", "left_front_knee": "LeftForeArm", "left_front_hoof": "LeftHand_end",
    "right_front_shoulder": "RightArm", "right_front_knee": "RightForeArm", "right_front_hoof": "RightHand_end",
    "left_back_hip": "LeftUpLeg", "left_back_knee": "LeftLeg", "left_back_hoof": "LeftFoot_end",
    "right_back_hip": "RightUpLeg", "right_back_knee": "RightLeg", "right_back_hoof": "RightFoot_end",
    "nose": "Head_end",
}
_EYE_LOCAL = np.array([0.06, 0.035, 0.04])   # metres in the Head joint's frame (x to the snout, y left, z up)


def dog_to_horse17(motion: BvhMotion) -> tuple[np.ndarray, KeypointLayout]:
    """Keypoint positions (frames x 17 x 3, metres, Z up) of a dog capture BVH (Zhang et al. 2018)."""
    from rigs.keypoints import HORSE17

    out, world_rot, pos, idx = _direct(motion, _DOG_DIRECT, HORSE17, "dog capture")
    head_rot, head = world_rot[:, idx("Head")], pos[:, idx("Head")]
    for side, z in (("left", 1.0), ("right", -1.0)):    # z: the side's sign along the Head's Y
        out[:, HORSE17.index(f"{side}_eye")] = head + head_rot @ (_EYE_LOCAL * [1.0, z, 1.0])
    return out @ Y_UP_TO_Z_UP.T, HORSE17


SPL_PLAYER = {n: n.upper().replace("LEFT_", "L_").replace("RIGHT_", "R_") for n in (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle")}
FOOT = 0.3048


def read_spl_trial(path) -> tuple[np.ndarray, float, KeypointLayout]:
    """One SPL free-throw trial: joints (frames x 18 x 3, metres, Z up; the ball NaN where not
    tracked), frames per second (from the ``time`` stamps, ms), and the layout."""
    import json

    from rigs.keypoints import COCO17_BALL

    try:
        with open(path) as f:
            d = json.load(f)
        frames = d["tracking"]
        times = np.array([t["time"] for t in frames], float)
        player = np.array([[t["data"]["player"][SPL_PLAYER[n]] for n in COCO17_BALL.joints[:17]] for t in frames], float)
        ball = np.array([t["data"]["ball"] if t["data"].get("ball") is not None else [np.nan] * 3 for t in frames], float)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise MasError(f"{path}: not an SPL tracking file ({type(e).__name__}: {e})") from None
    if len(frames) < 2:
        raise MasError(f"{path}: fewer than two frames")
    dt = np.median(np.diff(times))
    if not 1.0 <= dt <= 1000.0:
        raise MasError(f"{path}: frame times {dt} ms apart: not a plausible frame rate")
    joints = np.concatenate([player, ball[:, None]], 1) * FOOT
    return joints, 1000.0 / dt, COCO17_BALL
