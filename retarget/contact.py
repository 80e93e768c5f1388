"""Foot contacts: detection and pinning (the measures are in ``mas_engine.metrics``).

A foot is in contact when it is near the floor (within ``height_margin`` of its lowest
height over the motion) and slow (horizontal speed under ``speed`` m/s). Pinning holds its
horizontal position at the contact's mean for the whole contact, blending in and out over
a few frames, so the fit that follows plants the foot (the legs absorb the difference).
"""
from __future__ import annotations

import numpy as np

from mas_engine.metrics import horizontal_speed


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


def _spans(mask: np.ndarray):
    """(start, end) of each run of True, end exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def pin_contacts(joints: np.ndarray, feet: list[int], contacts: np.ndarray, blend: int = 3) -> np.ndarray:
    """A copy of joints (frames x J x 3) with each foot held still (horizontally) during contact."""
    out = joints.copy()
    F = len(joints)
    for k, j in enumerate(feet):
        for s, e in _spans(contacts[:, k]):
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
