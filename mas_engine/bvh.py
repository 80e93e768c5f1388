"""BVH reading and forward kinematics (numpy, no Blender).

Conventions, as most exporters (MotionBuilder, CMU, Bandai Namco) use them:
- a joint's rotation channels are applied in the order they are listed, as intrinsic
  rotations: ``Zrotation Xrotation Yrotation`` means ``R = Rz @ Rx @ Ry`` and a point in
  the joint's frame maps to its parent's as ``p_parent = R @ p + t``;
- ``t`` is the joint's position channels when it has them (they hold the full local
  translation), otherwise its OFFSET;
- End Sites are kept as joints without channels, named ``<parent>_end``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import MasError

# BVH files are Y up; MAS is Z up. Y up -> Z up: (x, y, z) -> (x, -z, y), a proper rotation; its
# transpose goes back.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Z_UP_TO_Y_UP = Y_UP_TO_Z_UP.T

_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass
class BvhSkeleton:
    """Joint tree of a BVH file: names, parent indices (-1 for roots), OFFSETs and channels."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray          # joints x 3, file units
    channels: list[list[str]]    # per joint, e.g. ["Xposition", ..., "Yrotation"]; [] for end sites


@dataclass
class BvhMotion:
    skeleton: BvhSkeleton
    values: np.ndarray           # frames x channels, as in the file (degrees, file units)
    frame_time: float            # seconds

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def positions(self, scale: float = 1.0) -> np.ndarray:
        """World joint positions, frames x joints x 3, in file units times ``scale``."""
        return joint_positions(self.skeleton, self.values) * scale


def read_bvh(path) -> BvhMotion:
    """Parse a BVH file. Raises MasError naming the file and the problem when it is malformed."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise MasError(f"cannot read BVH file {path}: {e.strerror}") from None
    try:
        return parse_bvh(text)
    except (ValueError, IndexError) as e:
        raise MasError(f"{path} is not a valid BVH file: {e}") from None


def parse_bvh(text: str) -> BvhMotion:
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise ValueError("no MOTION section")
    tokens = head.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise ValueError("file does not start with HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            i += 2
        elif tok == "End":  # "End Site"
            names.append(names[stack[-1]] + "_end")
            i += 2
        elif tok == "{":
            parents.append(stack[-1] if stack else -1)
            stack.append(len(names) - 1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            offsets[stack[-1]] = [float(v) for v in tokens[i + 1:i + 4]]
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels[stack[-1]] = tokens[i + 2:i + 2 + n]
            i += 2 + n
        else:
            raise ValueError(f"unexpected token {tok!r} in HIERARCHY")
    if stack:
        raise ValueError("unbalanced braces in HIERARCHY")
    if not names:
        raise ValueError("no joints in HIERARCHY")
    for ch in channels:
        for c in ch:
            if c[1:] not in ("position", "rotation") or c[0] not in _AXES:
                raise ValueError(f"unknown channel {c!r}")

    lines = motion.strip().split("\n")
    frames = int(lines[0].split(":")[1])
    frame_time = float(lines[1].split(":")[1])
    if frame_time <= 0:
        raise ValueError(f"frame time {frame_time} is not positive")
    n_ch = sum(len(c) for c in channels)
    values = np.array(" ".join(lines[2:]).split(), dtype=np.float64)
    if frames <= 0 or values.size < frames * n_ch:
        raise ValueError(f"expected {frames} frames of {n_ch} channels, found {values.size} values (truncated?)")
    values = values[: frames * n_ch].reshape(frames, n_ch)
    skel = BvhSkeleton(names, parents, np.asarray(offsets, dtype=np.float64), channels)
    return BvhMotion(skel, values, frame_time)


def axis_rotation(axis: int, degrees: np.ndarray) -> np.ndarray:
    """Rotation matrices about one coordinate axis: (...,) degrees -> (..., 3, 3)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def local_transforms(skel: BvhSkeleton, values: np.ndarray):
    """Per-joint local rotations (frames x joints x 3 x 3) and translations (frames x joints x 3)."""
    F, J = values.shape[0], len(skel.names)
    rot = np.broadcast_to(np.eye(3), (F, J, 3, 3)).copy()
    trans = np.broadcast_to(skel.offsets, (F, J, 3)).copy()
    col = 0
    for j, chans in enumerate(skel.channels):
        for c in chans:
            axis = _AXES[c[0]]
            if c.endswith("position"):
                trans[:, j, axis] = values[:, col]
            else:
                rot[:, j] = rot[:, j] @ axis_rotation(axis, values[:, col])
            col += 1
    return rot, trans


def world_transforms(skel: BvhSkeleton, values: np.ndarray):
    """World rotations (frames x joints x 3 x 3) and positions (frames x joints x 3, file units)
    of every joint, end sites included."""
    rot, trans = local_transforms(skel, values)
    world_rot = np.empty_like(rot)
    world_pos = np.empty_like(trans)
    for j, p in enumerate(skel.parents):
        if p < 0:
            world_rot[:, j] = rot[:, j]
            world_pos[:, j] = trans[:, j]
        else:
            world_rot[:, j] = world_rot[:, p] @ rot[:, j]
            world_pos[:, j] = world_pos[:, p] + np.einsum("fij,fj->fi", world_rot[:, p], trans[:, j])
    return world_rot, world_pos


def joint_positions(skel: BvhSkeleton, values: np.ndarray) -> np.ndarray:
    """World positions (frames x joints x 3, file units) of every joint, end sites included."""
    return world_transforms(skel, values)[1]
