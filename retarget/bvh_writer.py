"""Writing rotation tracks as BVH, for any tool without Blender.

The file is Y up (as BVH readers expect; Blender's importer turns it back to Z up),
in metres by default (``units="cm"`` for tools that want centimetres). The root has
``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` with positions holding its
full position, other joints ``Zrotation Xrotation Yrotation`` (R = Rz Rx Ry), leaves an
End Site at their bone's tail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from mas_engine.atomic import atomic_write
from mas_engine.bvh import Z_UP_TO_Y_UP

_UNITS = {"m": 1.0, "cm": 100.0}


def write_bvh(path, track, units: str = "m", overwrite: bool = True) -> Path:
    """Write a RotationTrack as BVH (atomically; ``overwrite=False`` never replaces a file). Returns the path."""
    if units not in _UNITS:
        raise ValueError(f"units must be 'm' or 'cm', got {units!r}")
    arm = track.armature
    s = _UNITS[units]
    C = Z_UP_TO_Y_UP
    offsets = arm.offsets @ C.T * s
    ends = (arm.tails - arm.heads) @ C.T * s
    lines = ["HIERARCHY"]

    def joint(b, depth):
        pad = "  " * depth
        kind = "ROOT" if arm.parents[b] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {arm.bones[b]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[b, 0]:.6f} {offsets[b, 1]:.6f} {offsets[b, 2]:.6f}")
        if arm.parents[b] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        kids = arm.children(b)
        for c in kids:
            joint(c, depth + 1)
        if not kids:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {ends[b, 0]:.6f} {ends[b, 1]:.6f} {ends[b, 2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    F = track.rotations.shape[0]
    order = [b for b in _depth_first(arm)]
    R = C @ track.rotations[:, order] @ C.T                                   # F x B x 3 x 3, Y up
    euler = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(F, len(order), 3)
    euler = np.unwrap(euler, period=360.0, axis=0)                           # no 360-degree jumps
    root = track.root @ C.T * s
    values = np.concatenate([root, euler.reshape(F, -1)], 1)
    lines += ["MOTION", f"Frames: {F}", f"Frame Time: {1.0 / track.fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    return atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"), overwrite=overwrite)


def _depth_first(arm):
    out, stack = [], [0]
    while stack:
        b = stack.pop()
        out.append(b)
        stack += reversed(arm.children(b))
    return out
