"""Retargeting a generated motion onto a rig: what ``mas retarget`` runs.

Input: a motion file (``mas_engine.motion_io``: joints frames x J x 3, metres, Z up, fps,
layout). Output: a RotationTrack, written as BVH or as a rotation ``.npz``:
- ``root``: frames x 3, the root bone's head (metres, Z up);
- ``quaternions``: frames x bones x 4 (w, x, y, z), local rotations against the rest pose;
- ``fps``, ``bone_names``, ``parents``, ``rest_heads``, ``rest_tails`` (bones x 3, metres, Z up);
- ``prop_<name>``: frames x 3, keypoints that are not on the body (``prop_ball``), metres, Z up.

A ``coco17_ball`` motion drives the human rig: its body is converted to ``human16``
(``rigs.keypoints.coco17_to_human16``) and the ball becomes a prop of the track.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mas_engine.atomic import atomic_write
from mas_engine.errors import MasError
from mas_engine.metrics import foot_skating, jitter
from mas_engine.motion_io import Motion
from rigs.armature import Armature
from rigs.keypoints import KeypointLayout, body_keypoints

from .armatures import armature_from_bvh, builtin_rig
from .bvh_writer import write_bvh
from .contact import foot_locked_fit
from .fit import RotationTrack, fit_armature, marker_error
from .smpl import fit_smpl

BUILTIN_RIGS = ("human", "horse", "smpl")


def check_rig(rig, layout: KeypointLayout | None = None) -> None:
    """Raise MasError for a rig that cannot be used, before any work: a built-in name or an existing BVH file."""
    if isinstance(rig, Armature):
        return
    r = str(rig)
    if r in BUILTIN_RIGS:
        if layout is not None and r == "horse" and layout.name != "horse17":
            raise MasError(f"rig horse is for horse17 motions, not {layout.name}; use --rig human")
        if layout is not None and r in ("human", "smpl") and layout.name == "horse17":
            raise MasError(f"rig {r} is for human motions, not {layout.name}; use --rig horse")
        return
    if not r.lower().endswith(".bvh"):
        raise MasError(f"unknown rig {r!r}: use {', '.join(BUILTIN_RIGS)} or a .bvh file of your armature")
    if not Path(r).is_file():
        raise MasError(f"rig file {r} not found; give the path of a BVH file of your armature")


def retarget(motion: Motion | dict, rig: str = "human", in_place: bool = False, foot_lock: bool = True,
             iters: int = 30, smpl_model=None) -> tuple[RotationTrack, dict]:
    """Fit a rig to a motion (a ``Motion``, or a dict as load_motion returns it). Returns the track and quality numbers:
    marker error (m), foot skating and jitter before and after.

    rig: "human", "horse", "smpl" (needs ``smpl_model`` or MAS_SMPL_MODEL), a BVH file, or an
    ``Armature`` (e.g. from ``armature_from_skeleton``).
    """
    if isinstance(motion, dict):
        motion = Motion.from_dict(motion)
    joints, fps, layout = np.asarray(motion.joints, dtype=np.float64), float(motion.fps), motion.layout
    if in_place:
        r = layout.root
        joints = joints - np.concatenate([joints[:, r:r + 1, :2], np.zeros_like(joints[:, r:r + 1, :1])], -1)
    props = {n: joints[:, layout.index(n)].copy() for n in layout.optional}
    layout, joints = body_keypoints(joints, layout)     # e.g. COCO + ball: the body as the rig's keypoints
    feet = [layout.index(n) for n in layout.feet]
    fit = _fitter(rig, joints, layout, fps, iters, smpl_model)
    track = foot_locked_fit(fit, joints, layout, feet, fps) if foot_lock and feet else fit(joints, None)
    report = fit_report(track, joints, layout, feet, fps)
    track.props = props
    return track, report


def _fitter(rig, joints: np.ndarray, layout: KeypointLayout, fps: float, iters: int, smpl_model):
    """fit(targets, weights) -> RotationTrack for a rig: "smpl", an ``Armature``, a BVH file or a built-in name."""
    if rig == "smpl":
        return lambda targets, weights: fit_smpl(targets, layout, fps, smpl_model, weights=weights)[0]
    if isinstance(rig, Armature):
        if rig.layout != layout.name:
            raise MasError(f"armature {rig.name} is mapped for {rig.layout} keypoints; this motion uses {layout.name}")
        arm = rig
    elif str(rig).lower().endswith(".bvh"):
        arm = armature_from_bvh(rig, joints, layout)
    else:
        arm = builtin_rig(rig, joints, layout)
    return lambda targets, weights: fit_armature(targets, layout, arm, fps, iters=iters, weights=weights)


def fit_report(track: RotationTrack, joints: np.ndarray, layout: KeypointLayout, feet: list[int], fps: float) -> dict:
    """How well a fit keeps the keypoints (marker error, m) and how smooth it is, before and after."""
    names = [n for n in layout.joints if n in track.armature.markers]
    cols = [layout.index(n) for n in names]
    report = {"marker_error_m": marker_error(track, joints, layout),
              "jitter_before": jitter(joints[:, cols], fps), "jitter_after": jitter(track.markers(names), fps)}
    if feet:
        report["skating_before"] = foot_skating(joints[:, feet], fps)
        report["skating_after"] = foot_skating(track.markers([layout.joints[f] for f in feet]), fps)
    return report


def save_track(path, track: RotationTrack, overwrite: bool = True) -> Path:
    """Write a rotation track .npz atomically."""
    arm = track.armature
    return atomic_write(path, lambda tmp: np.savez(
        tmp, root=track.root.astype(np.float32), quaternions=track.quaternions.astype(np.float32),
        fps=np.float32(track.fps), bone_names=np.array(arm.bones), parents=np.array(arm.parents, np.int32),
        rest_heads=arm.heads.astype(np.float32), rest_tails=arm.tails.astype(np.float32),
        rig=np.array(arm.name), **{f"prop_{k}": v.astype(np.float32) for k, v in track.props.items()}), overwrite=overwrite)


def write_track(path, track: RotationTrack, overwrite: bool = True) -> Path:
    """BVH or .npz by the path's suffix; ``overwrite=False`` never replaces a file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".bvh":
        return write_bvh(path, track, overwrite=overwrite)
    if suffix == ".npz":
        return save_track(path, track, overwrite)
    raise MasError(f"output {path}: use a .bvh or .npz file name")
