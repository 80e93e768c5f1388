"""Foot contacts: detection and pinning (the measures are in ``mas_engine.metrics``).

A foot is in contact when it is near the floor (within ``height_margin`` of its lowest
height over the motion) and slow (horizontal speed under ``speed`` m/s). Pinning holds its
horizontal position at the contact's mean for the whole contact, blending in and out over
a few frames, so the fit that follows plants the foot (the legs absorb the difference).
"""
from __future__ import annotations

import numpy as np
import torch

from mas_engine.metrics import SKATE_SPEED, foot_skating, horizontal_speed, jitter, near_floor, sliding
from mas_engine.postprocess import plants, runs, standing, two_bone_ik

from .fit import RotationTrack, forward_kinematics, marker_error
from .rotations import swing


def detect_contacts(joints: np.ndarray, feet: list[int], fps: float, height_margin: float = 0.05,
                    speed: float = 0.3, slow_share: float = 0.4) -> np.ndarray:
    """frames x len(feet) booleans.

    A foot is slow under ``speed`` m/s, or under its own ``slow_share`` quantile of speed: a
    generated walk whose feet never quite stop still has a stance phase, where they are slowest.
    """
    f = joints[:, feet]
    low = np.percentile(f[..., 2], 5, axis=0)
    v = horizontal_speed(f, fps)
    return (f[..., 2] < low + height_margin) & (v < np.maximum(speed, np.quantile(v, slow_share, axis=0)))


def pin_contacts(joints: np.ndarray, feet: list[int], contacts: np.ndarray, blend: int = 3) -> np.ndarray:
    """A copy of joints (frames x J x 3) with each foot held still (horizontally) during contact."""
    out = joints.copy()
    F = len(joints)
    for k, j in enumerate(feet):
        for s, e in runs(contacts[:, k]):
            if e - s < 2:
                continue
            target = joints[s:e, j, :2].mean(0)
            w = np.zeros(F)
            w[s:e] = 1.0
            for i in range(1, blend + 1):  # ease in and out
                if s - i >= 0:
                    w[s - i] = max(w[s - i], 1 - i / (blend + 1))
                if e - 1 + i < F:
                    w[e - 1 + i] = max(w[e - 1 + i], 1 - i / (blend + 1))
            out[:, j, :2] = (1 - w[:, None]) * out[:, j, :2] + w[:, None] * target
    return out


def plant_feet(track: RotationTrack, joints: np.ndarray, layout, feet: list[int], fps: float) -> RotationTrack:
    """A copy of a fitted track whose feet stand where the motion's stand (frames x J x 3, metres, Z up).

    The stances are the engine's (``postprocess.standing`` on the motion) and the frames where the
    motion's foot is near the floor and not sliding by ``metrics.sliding``, each run held by ``plants``
    at its mean place, easing in and out: there the rig's thigh and shin turn by two-bone IK so that the
    foot's marker reaches that place (horizontally; its height stays the fit's), the foot keeping its
    world orientation. The rig's legs are not the motion's, so the fit's foot drifts by millimetres a
    frame where the motion's stands still; this holds it. A foot whose marker has no shin and thigh
    above it is left as it is.
    """
    arm = track.armature
    local = track.rotations.copy()
    world, heads = (t.numpy() for t in forward_kinematics(
        torch.from_numpy(local), torch.from_numpy(track.root), torch.from_numpy(arm.offsets), arm.parents))
    for f in feet:
        name = layout.joints[f]
        bone, point = arm.markers[name]
        a = arm.index(bone)
        shin = arm.parents[a] if np.allclose(point, arm.heads[a], atol=1e-6) else a
        thigh = arm.parents[shin] if shin >= 0 else -1
        if thigh < 0:
            continue
        foot = joints[:, f]
        # near the floor and slow: what the skating measure (metrics.sliding) counts as not sliding
        still = near_floor(foot) & (horizontal_speed(foot, fps) <= SKATE_SPEED)
        w, place = plants(foot, standing(joints, [f], fps)[:, 0] | still, blend=3)
        on = w > 0
        if not on.any():
            continue
        ankle = track.markers([name])[on, 0]
        hip, knee = heads[on, thigh], heads[on, shin]
        goal = ankle.copy()
        goal[:, :2] = (1 - w[on, None]) * ankle[:, :2] + w[on, None] * place[on]
        knee_to, ankle_to = two_bone_ik(hip, knee, ankle, goal)
        turn_thigh = swing(torch.from_numpy(knee - hip), torch.from_numpy(knee_to - hip)).numpy()
        ankle_mid = hip + (turn_thigh @ (ankle - hip)[..., None])[..., 0]
        turn_shin = swing(torch.from_numpy(ankle_mid - knee_to), torch.from_numpy(ankle_to - knee_to)).numpy() @ turn_thigh
        new_thigh, new_shin = turn_thigh @ world[on, thigh], turn_shin @ world[on, shin]
        up = arm.parents[thigh]
        parent = world[on, up] if up >= 0 else np.eye(3)
        local[on, thigh] = np.swapaxes(parent, -1, -2) @ new_thigh
        local[on, shin] = np.swapaxes(new_thigh, -1, -2) @ new_shin
        for c in arm.children(shin):   # the foot keeps its orientation in the world
            local[on, c] = np.swapaxes(new_shin, -1, -2) @ world[on, c]
        world[on, thigh], world[on, shin] = new_thigh, new_shin
    return RotationTrack(arm, local, track.root.copy(), track.fps, dict(track.props))


def foot_locked_fit(fit, joints: np.ndarray, layout, feet: list[int], fps: float):
    """The best of several fits of a motion (frames x J x 3, metres, Z up) with its feet pinned.

    fit(targets, weights) -> RotationTrack. Candidates: contacts found on the input, found again
    on the first fit's smooth feet, no pinning, and pinning 100x and 1000x harder while every fit
    is worse than the input in foot skating or jitter. The winner is the least worse than the input
    (then the least skating) among the fits whose marker error is within 20% + 5 mm of the best
    one's: the keypoints themselves are never traded for less skating. Last, its feet are planted
    where the motion's stand (``plant_feet``) if that makes it less worse, within the same error.
    """
    skate0, jitter0 = foot_skating(joints[:, feet], fps), jitter(joints, fps)

    def skating(track):
        return foot_skating(track.markers([layout.joints[f] for f in feet]), fps)

    def violation(track):
        """How much worse than the input (relative), in foot skating and in jitter; 0: no worse."""
        marked = [n for n in layout.joints if n in track.armature.markers]
        j0 = jitter0 if len(marked) == layout.num_joints else jitter(joints[:, [layout.index(n) for n in marked]], fps)
        return (max(0.0, skating(track) - skate0) / max(skate0, 1e-3)
                + max(0.0, jitter(track.markers(marked), fps) - j0) / max(j0, 1e-3))

    def pinned(contacts, weight=10.0):
        weights = np.ones(joints.shape[:2])
        weights[:, feet] += (weight - 1.0) * contacts   # planted feet stay planted despite the smoothing
        return fit(pin_contacts(joints, feet, contacts), weights), contacts

    candidates = [pinned(detect_contacts(joints, feet, fps))]
    # jittery input hides contacts: find them again on the smooth fitted feet
    fitted_feet = np.zeros_like(joints)
    fitted_feet[:, feet] = candidates[0][0].markers([layout.joints[f] for f in feet])
    candidates.append(pinned(detect_contacts(fitted_feet, feet, fps)))
    candidates.append((fit(joints, None), np.zeros_like(candidates[0][1])))    # no pinning: smoothest, sometimes best
    # a walk whose feet never stop: pin harder, until a fit is no worse than the input in both measures
    for weight in (100.0, 1000.0):
        if min(violation(t) for t, _ in candidates) == 0.0:
            break
        candidates.append(pinned(min(candidates, key=lambda c: skating(c[0]))[1], weight))
    best = min(candidates, key=lambda c: (violation(c[0]), skating(c[0])))
    if skating(best[0]) > skate0:
        # the rig's fixed bone lengths can bring a foot near the floor where the input's was not,
        # and there it slides: pin those frames too (measured on the fit's own feet), and a frame either side
        s = sliding(best[0].markers([layout.joints[f] for f in feet]), fps)
        slid = s.copy()
        slid[1:] |= s[:-1]
        slid[:-1] |= s[1:]
        candidates.append(pinned(best[1] | slid))
    errors = [marker_error(t, joints, layout) for t, _ in candidates]
    # close to the best: a pin that holds a foot still while the body moves on trades the keypoints
    # for less skating (a user's rig of other proportions: 4.5 -> 10 cm, the ankles 26 cm off, at 2x + 2 cm)
    allowed = 1.2 * min(errors) + 0.005
    close = [t for (t, _), e in zip(candidates, errors) if e <= allowed]
    best = min(close, key=lambda t: (violation(t), skating(t)))
    planted = plant_feet(best, joints, layout, feet, fps)
    if (violation(planted), skating(planted)) < (violation(best), skating(best)) and \
            marker_error(planted, joints, layout) <= allowed:
        return planted
    return best
