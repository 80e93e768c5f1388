"""Foot contacts: detection and pinning (the measures are in ``mas_engine.metrics``).

A foot is in contact when it is near the floor (within ``height_margin`` of its lowest
height over the motion) and slow (horizontal speed under ``speed`` m/s). Pinning holds its
horizontal position at the contact's mean for the whole contact, blending in and out over
a few frames, so the fit that follows plants the foot (the legs absorb the difference).
"""
from __future__ import annotations

import numpy as np

from mas_engine.metrics import foot_skating, horizontal_speed, jitter, sliding
from mas_engine.postprocess import runs

from .fit import marker_error


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


def foot_locked_fit(fit, joints: np.ndarray, layout, feet: list[int], fps: float):
    """The best of several fits of a motion (frames x J x 3, metres, Z up) with its feet pinned.

    fit(targets, weights) -> RotationTrack. Candidates: contacts found on the input, found again
    on the first fit's smooth feet, no pinning, and pinning 100x and 1000x harder while every fit
    is worse than the input in foot skating or jitter. The winner is the least worse than the input
    (then the least skating) among the fits whose marker error is close to the best one's: the
    keypoints themselves are never traded for less skating.
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
    close = [t for (t, _), e in zip(candidates, errors) if e <= 2 * min(errors) + 0.02]
    return min(close, key=lambda t: (violation(t), skating(t)))
