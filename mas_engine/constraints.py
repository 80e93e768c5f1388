"""Constraints: joint positions a generated motion must pass through (start and end poses,
keyframes, a root path on the floor).

MAS keeps them in its consistency block: after each triangulation the constrained joints are
pulled onto their targets, and the pull is spread to nearby frames with a Gaussian falloff so
that no seam appears; the pulled 3D motion is then projected into the views, and the 2D prior
fills in the rest. Targets are in the motion file's convention (metres, Z up, floor at Z = 0);
the sampler aligns them to its own frame with one translation per motion (the mean offset over
the constrained values), so the subject stays where the cameras look, and the finished motion
is moved by that translation, which puts the constrained joints on their targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rigs.keypoints import KeypointLayout

from .errors import MasError

FALLOFF_S = 0.25          # seconds: how far before and after a constrained frame its pull fades (1 sigma)
START_FRAMES = 3          # frames of a motion that a continuation keeps: its pose and its velocity


@dataclass
class Constraints:
    """targets: frames x joints x 3 (metres, Z up); mask: frames x joints x 3, True where fixed.
    falloff: frames (the Gaussian's sigma) over which a constraint's pull fades."""

    targets: np.ndarray
    mask: np.ndarray
    falloff: float

    @property
    def frames(self) -> int:
        return self.targets.shape[0]

    def merge(self, other: "Constraints") -> "Constraints":
        """Both sets of constraints (the later one wins where both fix the same value)."""
        targets = np.where(other.mask, other.targets, self.targets)
        return Constraints(targets, self.mask | other.mask, max(self.falloff, other.falloff))


def empty(frames: int, layout: KeypointLayout, fps: float) -> Constraints:
    return Constraints(np.zeros((frames, layout.num_joints, 3)), np.zeros((frames, layout.num_joints, 3), bool),
                       FALLOFF_S * fps)


def _check_skeleton(motion: dict, layout: KeypointLayout, fps: float, what: str) -> np.ndarray:
    """The joints of a motion or pose (a dict as load_motion gives it, 1 or more frames) for this layout."""
    names = [str(n) for n in np.atleast_1d(motion["joint_names"])]
    if names != list(layout.joints):
        raise MasError(f"{what}: its skeleton ({len(names)} joints: {', '.join(names[:3])}, ...) is not the model's "
                       f"{layout.name} ({layout.num_joints} joints); give a motion made with a {layout.name} model")
    joints = np.asarray(motion["joints"], np.float64)
    if joints.ndim == 2:
        joints = joints[None]
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3) or len(joints) == 0:
        raise MasError(f"{what}: joints must be frames x {layout.num_joints} x 3, got {joints.shape}")
    body = [j for j, n in enumerate(layout.joints) if n not in layout.optional]
    known = np.isfinite(joints[:, body]).all(-1)            # a joint nobody knows (NaN) is left free
    if np.isinf(joints).any() or (known.sum(1) < len(body) / 2).any():
        raise MasError(f"{what}: the pose has infinite joints, or fewer than half of its joints are known (NaN); clean it")
    if "fps" in motion and abs(float(motion["fps"]) - fps) > 1e-3 and len(joints) > 1:
        raise MasError(f"{what}: {float(motion['fps']):g} fps, but the model makes {fps:g} fps; resample it first")
    return joints


def start_from(motion: dict, frames: int, layout: KeypointLayout, fps: float, what: str = "--start-from") -> Constraints:
    """The new motion begins where ``motion`` ends: its last START_FRAMES frames (pose and velocity)."""
    joints = _check_skeleton(motion, layout, fps, what)[-START_FRAMES:]
    c = empty(frames, layout, fps)
    if len(joints) > frames:
        raise MasError(f"{what}: the motion to continue needs {len(joints)} frames, the new one has {frames}")
    c.targets[:len(joints)], c.mask[:len(joints)] = np.nan_to_num(joints), _known(joints, layout)   # NaN: free
    return c


def end_at(pose: dict, frames: int, layout: KeypointLayout, fps: float) -> Constraints:
    """The new motion ends in the first frame of ``pose`` (a pose or a motion file)."""
    joints = _check_skeleton(pose, layout, fps, "--end-at")[:1]
    c = empty(frames, layout, fps)
    c.targets[-1], c.mask[-1] = np.nan_to_num(joints[0]), _known(joints, layout)[0]
    return c


def keyframes(keys: dict, frames: int, layout: KeypointLayout, fps: float) -> Constraints:
    """Keyframes from a file in the motion format: ``joints`` (K x J x 3, NaN where free) at frames 0..K-1
    of the new motion, or with a ``mask`` (K x J, True where fixed)."""
    names = [str(n) for n in np.atleast_1d(keys["joint_names"])]
    if names != list(layout.joints):
        raise MasError(f"--keys: its skeleton ({len(names)} joints) is not the model's {layout.name}; "
                       f"give keys for {layout.name}")
    joints = np.asarray(keys["joints"], np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3):
        raise MasError(f"--keys: joints must be frames x {layout.num_joints} x 3, got {joints.shape}")
    mask = np.isfinite(joints).all(-1) if "mask" not in keys else np.asarray(keys["mask"], bool)
    if mask.shape != joints.shape[:2]:
        raise MasError(f"--keys: mask must be frames x joints ({joints.shape[:2]}), got {mask.shape}")
    if not np.isfinite(joints[mask]).all():
        raise MasError("--keys: a joint marked fixed in the mask has a NaN or infinite target")
    last = np.nonzero(mask.any(1))[0]
    if last.size == 0:
        raise MasError("--keys: no joint is fixed at any frame (all NaN or masked out)")
    if last[-1] >= frames:
        raise MasError(f"--keys: a key at frame {last[-1]}, but the motion has {frames} frames "
                       f"({frames / fps:g} s); lengthen --seconds or move the key")
    c = empty(frames, layout, fps)
    n = len(joints)
    c.targets[:n] = np.where(mask[..., None], np.nan_to_num(joints), 0.0)
    c.mask[:n] = mask[..., None]
    return c


def keys_from_poses(poses: dict, poses_fps: float, frames: int, layout: KeypointLayout, fps: float) -> dict:
    """Poses at given frames ({frame counted at ``poses_fps`` from the motion's start: joints x 3,
    metres, NaN where free}, e.g. an animator's keyframes at the scene's rate) -> keys in the motion
    format at the model's ``fps`` (``keyframes`` takes them). Poses beyond the motion are dropped."""
    keys = np.full((frames, layout.num_joints, 3), np.nan)
    for f, pose in poses.items():
        k = int(round(int(f) * fps / poses_fps))
        if 0 <= k < frames:
            keys[k] = pose
    return {"joints": keys, "joint_names": np.array(layout.joints)}


def root_path(waypoints: np.ndarray, frames: int, layout: KeypointLayout, fps: float) -> Constraints:
    """The root follows a path on the floor: ``waypoints`` (K x 2, metres) walked at constant speed
    over the motion (K = frames: one point per frame). Only the root's X and Y are fixed."""
    p = np.asarray(waypoints, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2 or not np.isfinite(p).all():
        raise MasError(f"--path: give at least two finite x,y points in metres, got shape {p.shape}")
    if len(p) != frames:
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        if s[-1] <= 0:
            raise MasError("--path: the points are all the same; give a path that goes somewhere")
        u = np.linspace(0.0, s[-1], frames)
        p = np.stack([np.interp(u, s, p[:, 0]), np.interp(u, s, p[:, 1])], 1)
    c = empty(frames, layout, fps)
    c.targets[:, layout.root, :2] = p
    c.mask[:, layout.root, :2] = True
    return c


def parse_path(text: str) -> np.ndarray:
    """'x,y x,y ...' (metres) -> K x 2."""
    try:
        pts = [[float(v) for v in item.split(",")] for item in text.replace(";", " ").split()]
    except ValueError:
        raise MasError(f"--path {text!r}: give points as 'x,y x,y ...' in metres") from None
    if len(pts) < 2 or any(len(q) != 2 for q in pts):
        raise MasError(f"--path {text!r}: give at least two points as 'x,y x,y ...' in metres")
    return np.asarray(pts)


def _known(joints: np.ndarray, layout: KeypointLayout) -> np.ndarray:
    """frames x J x 3 mask: every finite joint of a pose (a missing prop stays free)."""
    return np.repeat(np.isfinite(joints).all(-1, keepdims=True), 3, axis=-1)


def posed_frames(mask: np.ndarray) -> np.ndarray:
    """(frames,) bool: the frames a constraint mask (frames x joints x 3) fixes with more than one
    joint (a pose or part of one, not only a root path's root)."""
    return np.asarray(mask).any(-1).sum(-1) > 1


def pull_to_targets(X: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, falloff: float,
                    loop: bool = False, root: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull a motion onto its constraints, smoothly (sampling space, any consistent units).

    X: motions x frames x joints x 3; targets, mask: frames x joints x 3 (mask 0/1). The targets are
    first aligned to X by one translation per motion and coordinate (the mean of target - X over
    the constrained values). Then the whole body moves with its ``root`` where the root is
    constrained (a root path carries the body along), and every other constrained joint moves
    on its own; each other frame moves by the offset of the nearest constrained frame, faded by
    a Gaussian of the distance (sigma ``falloff`` frames), so the motion stays continuous where a
    constraint begins or ends, and the constrained values land exactly on their aligned targets.
    Returns (X, translation motions x 3: add it to X to put the constrained values on the targets)."""
    B, F, J, _ = X.shape
    m, targets = mask.to(X), targets.to(X)
    shift = ((targets - X) * m).sum((1, 2)) / m.sum((0, 1)).clamp(min=1.0)       # B x 3
    aligned = targets - shift[:, None, None]

    def spread(delta, mm):
        """The offset of the nearest constrained frame (per joint and coordinate), fading with the
        distance to it (a Gaussian of sigma ``falloff``): continuous where a constrained run ends."""
        f = torch.arange(F, device=X.device, dtype=X.dtype)
        if loop:                                    # three copies, so the nearest may lie across the seam
            delta, mm = torch.cat([delta] * 3, 1), torch.cat([mm] * 3, 0)
            f = torch.arange(3 * F, device=X.device, dtype=X.dtype)
        n = len(f)
        big = torch.full_like(mm, float(2 * n))
        at = torch.where(mm > 0, f[:, None, None].expand_as(mm), -big)        # constrained frame or far left
        left = torch.cummax(at, 0).values                                     # last constrained <= f
        at = torch.where(mm > 0, f[:, None, None].expand_as(mm), 2 * big)
        right = torch.flip(torch.cummin(torch.flip(at, [0]), 0).values, [0])  # first constrained >= f
        nearest = torch.where((f[:, None, None] - left) <= (right - f[:, None, None]), left, right)
        dist = (nearest - f[:, None, None]).abs()
        idx = nearest.clamp(0, n - 1).long()
        d = torch.gather(delta, 1, idx[None].expand_as(delta))
        w = torch.exp(-0.5 * (dist / max(falloff, 1e-3)) ** 2) * (dist < n)
        out = w * d
        return out[:, F:2 * F] if loop else out

    mr = m[:, root:root + 1]
    if mr.any():                                      # the body follows its root, exactly where it is fixed
        d = (aligned[:, :, root:root + 1] - X[:, :, root:root + 1]) * mr
        X = X + torch.where(mr > 0, d, spread(d, mr))
    moved = X + spread((aligned - X) * m, m)
    return torch.where(m > 0, aligned, moved), shift
