"""Skeleton fit: keypoint positions -> per-bone rotations of an armature, batched over frames.

1. Analytic first guess, bone by bone from the root: the bone's world rotation is the
   weighted Kabsch fit of the rest vectors to the keypoints it carries (its nearest marked
   descendants; if they give fewer than two directions, the next marked level too: the
   thigh sees knee and ankle, which fixes the knee's plane, the twist keypoints cannot see
   otherwise), plus a weak pull towards the parent's frame for twist; feet are kept level.
2. LBFGS refinement of all local rotations (6D) and the root translation on: keypoint
   position error + temporal smoothness (second differences) + hinge prior (knees and
   elbows bend about one axis) + a weak pull to the first guess.

Bone lengths are the armature's (build the built-in rigs with the motion's proportions,
``rigs.armature.human_proportions``); rotations are local, relative to the rest pose.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mas_engine.errors import MasError
from rigs.armature import Armature
from rigs.keypoints import KeypointLayout

from .rotations import kabsch, matrix_from_6d, matrix_to_6d, quaternion_from_matrix, swing

DTYPE = torch.float64


@dataclass
class RotationTrack:
    """Joint rotations of an armature over time.

    rotations: frames x bones x 3 x 3, local, relative to the rest pose (rest frames = world)
    root: frames x 3, the root bone's head position (metres, Z up)
    props: keypoints that are not on the body (the ball): name -> frames x 3 (metres, Z up)
    """

    armature: Armature
    rotations: np.ndarray
    root: np.ndarray
    fps: float
    props: dict = field(default_factory=dict)

    @property
    def quaternions(self) -> np.ndarray:
        """frames x bones x 4, (w, x, y, z)."""
        return quaternion_from_matrix(torch.from_numpy(self.rotations)).numpy()

    def heads(self) -> np.ndarray:
        """World positions of every bone's head, frames x bones x 3."""
        _, heads = forward_kinematics(torch.from_numpy(self.rotations), torch.from_numpy(self.root),
                                      torch.from_numpy(self.armature.offsets), self.armature.parents)
        return heads.numpy()

    def markers(self, names) -> np.ndarray:
        """World positions of the named keypoint markers, frames x len(names) x 3."""
        m = Markers(self.armature, names)
        world, heads = forward_kinematics(torch.from_numpy(self.rotations), torch.from_numpy(self.root),
                                          torch.from_numpy(self.armature.offsets), self.armature.parents)
        return m.positions(world, heads).numpy()


def forward_kinematics(local: torch.Tensor, root: torch.Tensor, offsets: torch.Tensor, parents):
    """local (F, B, 3, 3), root (F, 3), offsets (B, 3) -> world rotations (F, B, 3, 3), heads (F, B, 3)."""
    world, heads = [], []
    for b, p in enumerate(parents):
        if p < 0:
            world.append(local[:, b])
            heads.append(root)
        else:
            world.append(world[p] @ local[:, b])
            heads.append(heads[p] + world[p] @ offsets[b])
    return torch.stack(world, 1), torch.stack(heads, 1)


class Markers:
    """Keypoints as points fixed on bones: bone index and the point relative to the bone's head."""

    def __init__(self, armature: Armature, names):
        self.names = list(names)
        missing = [n for n in self.names if n not in armature.markers]
        if missing:
            raise MasError(f"armature {armature.name} has no marker for keypoint(s) {', '.join(missing)}")
        self.bone = torch.tensor([armature.index(armature.markers[n][0]) for n in self.names])
        self.local = torch.from_numpy(np.stack([np.asarray(armature.markers[n][1], float) - armature.heads[armature.index(armature.markers[n][0])]
                                                for n in self.names]))

    def positions(self, world: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        return heads[:, self.bone] + (world[:, self.bone] @ self.local[..., None].to(world.dtype))[..., 0]


def _orienting(arm: Armature, at_head: dict[int, int], own: dict[int, list[int]], b: int):
    """How the first guess orients bone b: [(marker, weight)] and an optional hinge plane.

    Markers: b's own off-head markers, then its nearest marked descendants (through unmarked
    bones, e.g. the spine, at half weight). Plane: when b's single marked child c is a hinge
    (knee, elbow) with a marked child g, the normal of (b, c, g) fixes b's twist.
    """
    out = [(m, 1.0) for m in own.get(b, []) if at_head.get(b) != m]
    stack = [(c, 1.0) for c in arm.children(b)]
    first = []
    while stack:
        c, w = stack.pop()
        if c in at_head:
            out.append((at_head[c], w))
            first.append(c)
        else:  # an unmarked bone (spine, head joint): its own markers and its children count, at half weight
            out += [(m, 0.5) for m in own.get(c, [])]
            stack += [(g, 0.5) for g in arm.children(c)]
    plane = None
    if len(first) == 1 and arm.bones[first[0]] in arm.hinges:
        c = first[0]
        grand = [g for g in arm.children(c) if g in at_head]
        if grand:
            plane = (at_head[c], at_head[grand[0]], torch.from_numpy(np.asarray(arm.hinges[arm.bones[c]], float)))
    return out, plane


def smooth_frames(x: torch.Tensor) -> torch.Tensor:
    """x (F, C) filtered over frames by the binomial [1, 6, 15, 20, 15, 6, 1] / 64, the ends repeated."""
    k = torch.tensor([1.0, 6, 15, 20, 15, 6, 1], dtype=x.dtype) / 64
    padded = torch.nn.functional.pad(x.T[None], (3, 3), mode="replicate")
    return torch.nn.functional.conv1d(padded.transpose(0, 1), k.view(1, 1, -1))[:, 0].T


def level_rotation(parent_world: torch.Tensor) -> torch.Tensor:
    """World rotations (F, 3, 3) about Z only, heading where the parent's rest forward (-Y) points:
    how a foot is placed when no keypoint orients it."""
    f = parent_world @ torch.tensor([0.0, -1.0, 0.0], dtype=parent_world.dtype)
    yaw = torch.atan2(-f[:, 0], -f[:, 1])
    c, s = torch.cos(yaw), torch.sin(yaw)
    R = torch.zeros(parent_world.shape, dtype=parent_world.dtype)
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1
    return R


def keep_level(arm: Armature, local: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """Re-level the ``flat`` bones (after the refinement moved their parents)."""
    if not arm.flat:
        return local
    local = local.clone()
    world, _ = forward_kinematics(local, root, torch.from_numpy(arm.offsets), arm.parents)
    for name in arm.flat:
        b = arm.index(name)
        p = arm.parents[b]
        local[:, b] = world[:, p].transpose(-1, -2) @ level_rotation(world[:, p])
    return local


def initial_guess(arm: Armature, markers: Markers, targets: torch.Tensor):
    """Analytic local rotations (F, B, 3, 3) and root (F, 3) from marker targets (F, M, 3)."""
    F, B = targets.shape[0], len(arm.bones)
    rest = torch.from_numpy(arm.heads)
    offsets = torch.from_numpy(arm.offsets)
    marker_rest = rest[markers.bone] + markers.local                 # M x 3, world rest
    own: dict[int, list[int]] = {}
    at_head: dict[int, int] = {}
    for m, (b, loc) in enumerate(zip(markers.bone.tolist(), markers.local)):
        own.setdefault(b, []).append(m)
        if loc.norm() < 1e-9:
            at_head[b] = m
    if 0 not in at_head:
        raise MasError(f"armature {arm.name}: the root bone needs a keypoint at its head")
    eye = torch.eye(3, dtype=DTYPE)
    world = [None] * B
    heads = [None] * B
    for b, p in enumerate(arm.parents):
        heads[b] = targets[:, at_head[0]] if p < 0 else heads[p] + world[p] @ offsets[b]
        parent_R = eye.expand(F, 3, 3) if p < 0 else world[p]
        carried, plane = _orienting(arm, at_head, own, b)
        if arm.bones[b] in arm.flat:
            world[b] = level_rotation(parent_R)
        elif carried:
            idx = [m for m, _ in carried]
            src = (marker_rest[idx] - rest[b]).expand(F, -1, -1)           # F x n x 3
            dst = targets[:, idx] - heads[b][:, None]
            # directions only: bone lengths may differ from the keypoints' distances
            dst = torch.nn.functional.normalize(dst, dim=-1) * src.norm(dim=-1, keepdim=True)
            w = torch.tensor([wt for _, wt in carried], dtype=DTYPE).expand(F, -1)
            if plane is not None:
                # the limb's plane: the rest hinge axis goes to the normal of (b, c, g), weighted by the bend
                mc, mg, axis = plane
                u, v = targets[:, mc] - heads[b], targets[:, mg] - targets[:, mc]
                n = torch.cross(u, v, dim=-1)
                bend = n.norm(dim=-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp(min=1e-9)
                n = torch.nn.functional.normalize(n, dim=-1) * bend[:, None]
                if p >= 0:
                    # a hinge bends one way: a plane turned more than a quarter turn from the least-twist
                    # pose's hinge is a limb bent backwards (a nearly straight knee's noise), which says
                    # nothing of the twist
                    least = swing((parent_R @ src[:, 0, :, None])[..., 0], dst[:, 0]) @ parent_R
                    n = n * ((least @ axis) * torch.nn.functional.normalize(n, dim=-1)).sum(-1, keepdim=True).clamp(min=0.0)
                # the plane over 7 frames, each frame's weighted by its bend: a nearly straight limb, whose
                # plane is noise, keeps the twist of the bent frames around it instead of spinning
                n = smooth_frames(n)
                bend = n.norm(dim=-1)
                n = torch.nn.functional.normalize(n, dim=-1)
                L = src[:, :1].norm(dim=-1, keepdim=True)
                src = torch.cat([src, axis * L], 1)
                dst = torch.cat([dst, n[:, None] * L], 1)
                w = torch.cat([w, bend[:, None].clamp(max=1.0)], 1)
            if p >= 0:
                # weak pull to the parent's frame swung onto the first direction (the least twist):
                # picks the twist the keypoints leave open
                ref = swing((parent_R @ src[:, 0, :, None])[..., 0], dst[:, 0]) @ parent_R
                src = torch.cat([src, (eye * 0.1).expand(F, 3, 3)], 1)
                dst = torch.cat([dst, (ref @ (eye * 0.1).T).transpose(1, 2)], 1)
                w = torch.cat([w, torch.full((F, 3), 0.05, dtype=DTYPE)], 1)
            world[b] = kabsch(src, dst, w)
        else:
            world[b] = parent_R
    world = torch.stack(world, 1)
    local = world.clone()
    for b, p in enumerate(arm.parents):
        if p >= 0:
            local[:, b] = world[:, p].transpose(-1, -2) @ world[:, b]
    return local, targets[:, at_head[0]].clone()


def check_motion(joints: np.ndarray, layout: KeypointLayout, arm: Armature | None = None) -> None:
    """Raise MasError (nothing is written) for a motion a rig cannot follow."""
    if arm is not None and arm.layout != layout.name:
        raise MasError(f"the motion uses keypoint layout {layout.name} but rig {arm.name} is driven by "
                       f"{arm.layout}; pick a rig made for {layout.name}")
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3):
        raise MasError(f"expected frames x {layout.num_joints} x 3 joints, got {joints.shape}")
    if joints.shape[0] == 0:
        raise MasError("the motion has no frames")
    if not np.isfinite(joints).all():
        bad = np.nonzero(~np.isfinite(joints).all(axis=(1, 2)))[0]
        raise MasError(f"the motion has NaN or infinite positions in {len(bad)} frame(s) (first: {bad[0]}); "
                       f"nothing was written")


def fit_armature(joints: np.ndarray, layout: KeypointLayout, arm: Armature, fps: float, iters: int = 30,
                 smooth: float = 3.0, hinge: float = 0.1, anchor: float = 0.01,
                 weights: np.ndarray | None = None) -> RotationTrack:
    """Rotations of ``arm`` whose keypoint markers follow ``joints`` (frames x J x 3, metres, Z up).

    weights: frames x J, how much each keypoint counts (default 1; e.g. more for planted feet).
    smooth: weight of the bones' accelerations (jitter) against the keypoint error.
    """
    check_motion(joints, layout, arm)
    names = [n for n in layout.joints if n in arm.markers]
    markers = Markers(arm, names)
    cols = [layout.index(n) for n in names]
    kp = torch.from_numpy(np.asarray(joints, dtype=np.float64)[:, cols])
    w = torch.ones(kp.shape[:2], dtype=DTYPE) if weights is None else torch.from_numpy(np.asarray(weights, float)[:, cols])
    local0, root0 = initial_guess(arm, markers, kp)
    if iters <= 0:
        return RotationTrack(arm, local0.numpy(), root0.numpy(), fps)
    offsets = torch.from_numpy(arm.offsets)
    d6_0 = matrix_to_6d(local0)
    d6 = d6_0.clone().requires_grad_(True)
    root = root0.clone().requires_grad_(True)
    hinge_bones = torch.tensor([arm.index(b) for b in arm.hinges], dtype=torch.long)
    hinge_axes = torch.from_numpy(np.stack(list(arm.hinges.values()))) if arm.hinges else None
    F = kp.shape[0]
    scale = 1.0 / (F * len(names))

    def loss_fn():
        local = matrix_from_6d(d6)
        world, heads = forward_kinematics(local, root, offsets, arm.parents)
        loss = (((markers.positions(world, heads) - kp) ** 2).sum(-1) * w).sum() * scale
        if F > 2:  # jitter: the bones' accelerations (metres per frame^2)
            loss = loss + smooth * ((heads[2:] - 2 * heads[1:-1] + heads[:-2]) ** 2).sum() / (F * len(arm.bones))
        if hinge_axes is not None:
            a = hinge_axes.to(local.dtype)
            loss = loss + hinge * ((local[:, hinge_bones] @ a[..., None])[..., 0] - a).pow(2).sum() * scale * 1e-2
        loss = loss + anchor * ((d6 - d6_0) ** 2).sum() * scale * 1e-2
        return loss

    opt = torch.optim.LBFGS([d6, root], lr=1.0, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        local = keep_level(arm, matrix_from_6d(d6), root)
        return RotationTrack(arm, local.numpy(), root.detach().numpy(), fps)


def marker_error(track: RotationTrack, joints: np.ndarray, layout: KeypointLayout) -> float:
    """Mean distance (metres) between the fitted markers and the keypoints they follow."""
    names = [n for n in layout.joints if n in track.armature.markers]
    fitted = track.markers(names)
    return float(np.linalg.norm(fitted - joints[:, [layout.index(n) for n in names]], axis=-1).mean())
